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


def test_digits_uses_conv2d_and_the_curve_is_the_running_best():
    rows = tuner_compare.compare(budget=3, epochs=1, dataset="digits",
                                 oracles=("RandomSearch",))
    (r,) = rows
    assert r["trials"] == 3 and len(r["curve"]) == 3
    times, best = zip(*r["curve"])
    assert list(times) == sorted(times) and times[-1] <= r["seconds"]
    assert list(best) == sorted(best) and best[-1] == r["best_val_accuracy"]
    assert r["test_accuracy"] > 0.2  # 10 classes: far above chance after one epoch


def test_hypermodel_picks_the_convolution_by_input_rank():
    import keras
    import keras_tuner as kt

    for shape, layer in (((40, 1), keras.layers.Conv1D), ((8, 8, 1), keras.layers.Conv2D)):
        model = tuner_compare.CNNHyperModel(shape, 10).build(kt.HyperParameters())
        assert any(type(l) is layer for l in model.layers)
        assert model.output_shape == (None, 10)
