"""The tuner comparison benchmark: a tiny run of two oracles, and the table."""
import math

import pytest

from tf_enas.benchmarks import tuner_compare


def test_tiny_compare_and_markdown():
    rows = tuner_compare.compare(budget=1, epochs=1, num_samples=500,
                                 oracles=("PolicyOracle", "RandomSearch"))
    assert [r["oracle"] for r in rows] == ["PolicyOracle", "RandomSearch"]
    for r in rows:
        assert r["trials"] == 1  # the same budget for both
        assert 0.0 < r["best_val_accuracy"] <= 1.0 and 0.0 <= r["test_accuracy"] <= 1.0
        assert 0.0 < r["time_to_best_s"] <= r["seconds"]
        assert r["common_val_accuracy"] == min(x["best_val_accuracy"] for x in rows)
        assert not math.isnan(r["time_to_common_s"])
    table = tuner_compare.markdown(rows).splitlines()
    assert table[0].startswith("Budget per oracle: 1 trials")
    assert table[2].startswith("| oracle |") and len(table) == 4 + len(rows)
    assert table[4].startswith("| PolicyOracle | 1 |")


def test_bad_budget_and_oracle_names_are_clear_errors():
    with pytest.raises(ValueError, match="budget"):
        tuner_compare.compare(budget=0)
    with pytest.raises(ValueError, match="oracles"):
        tuner_compare.compare(budget=1, oracles=("GridSearch",))
