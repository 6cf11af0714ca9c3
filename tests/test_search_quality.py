"""The search-quality benchmark's bookkeeping: time to target and the grouped table."""
import numpy as np

from tf_enas.benchmarks import search_quality as sq


def _row(method, seed, test, val, curve):
    return {"method": method, "dataset": "mnist1d", "seed": seed, "test_accuracy": test,
            "val_accuracy": val, "wall_seconds": 10.0 * (seed + 1), "evaluated": 5,
            "curve": curve, "seconds_to_target": sq.seconds_to_target(curve)}


def test_seconds_to_target_is_the_first_crossing():
    assert sq.seconds_to_target([(1.0, 0.5), (2.0, 0.97), (3.0, 0.99)]) == 2.0
    assert sq.seconds_to_target([(1.0, 0.5), (2.0, 0.969)]) is None
    assert sq.seconds_to_target([]) is None


def test_markdown_groups_seeds_with_mean_and_std():
    rows = [_row("ENAS", 0, 0.98, 0.975, [(5.0, 0.97)]),
            _row("ENAS", 1, 0.96, 0.965, [(9.0, 0.96)]),
            _row("random", 0, 0.90, 0.91, [])]
    table = sq.markdown(rows).splitlines()
    assert len(table) == 2 + len(sq.PAPER_ROWS) + 2
    enas = next(line for line in table if "| ENAS |" in line)
    test = np.array([0.98, 0.96])
    assert f"{test.mean():.4f} ± {test.std():.4f}" in enas
    assert "| 5 s (1/2) |" in enas and "| 15 | 2 |" in enas
    assert "not reached" in next(line for line in table if "| random |" in line)


def test_every_method_of_the_issue_is_in_the_table():
    names = list(sq.weight_sharing_methods())
    assert names == ["random (shared weights)", "ENAS (architecture only)",
                     "joint, response=none", "joint + unrolled", "joint + ift"]
    configs = [sq.search_config("mnist1d", 0, 5.0, True, **kw)
               for _, kw in sq.weight_sharing_methods().values()]
    assert [c.response for c in configs] == ["none", "none", "none", "unrolled", "ift"]
    assert [c.reward for c in configs] == ["accuracy", "accuracy", "loss", "loss", "loss"]
    assert all(c.retrain.optimizer == "sgd" for c in configs[2:])
