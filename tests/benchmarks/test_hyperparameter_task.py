"""The hyperparameter-task study: its data, the in-process budget growth it relies on,
and its report."""
import numpy as np
import pytest

from tf_enas.benchmarks import hyperparameter_task as ht
from tf_enas.data import load
from tf_enas.search import Search
from tests.test_search import state, tiny


@pytest.fixture(scope="module")
def splits():
    return load("mnist1d", seed=0, num_samples=600)


def test_task_is_a_stratified_thousand_with_the_test_set_unchanged():
    task, full = ht.splits(0), load("mnist1d", 0, 0.1)
    assert len(task.x_train) + len(task.x_val) == 1000
    np.testing.assert_array_equal(np.bincount(task.y_train), [80] * 10)
    np.testing.assert_array_equal(np.bincount(task.y_val), [20] * 10)
    np.testing.assert_array_equal(task.x_test, full.x_test)
    pool = {r.tobytes() for r in np.concatenate([full.x_train, full.x_val])}
    assert all(r.tobytes() in pool for r in np.concatenate([task.x_train, task.x_val]))


def test_a_larger_time_budget_continues_the_same_search(tmp_path, splits):
    straight = Search(tiny(epochs=3), str(tmp_path / "a"), splits=splits, verbose=0)
    straight.search()
    grown = Search(tiny(epochs=3), str(tmp_path / "b"), splits=splits, verbose=0)
    assert len(grown.search(time_budget_s=1e-6)) == 1  # the first epoch always runs
    assert len(grown.search(time_budget_s=1e6)) == 3
    (va, ha), (vb, hb) = state(straight), state(grown)
    assert ha == hb
    for a, b in zip(va, vb):
        np.testing.assert_array_equal(a, b)


def _row(method, seed, fraction, test, val=0.5, **kw):
    return {"method": method, "seed": seed, "fraction": fraction, "grid_weight_decay": None,
            "test_accuracy": test, "val_accuracy": val, "epochs": 4, "child": "0 1",
            "hyperparameters": {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
            "response_skipped": None, "momentum_mean": [0.8, 0.9], "search_seconds": 10.0,
            **kw}


def test_goal_compares_half_budget_against_the_score_functions_full_budget():
    rows = [_row("joint, score function", s, 1.0, t) for s, t in ((0, 0.70), (1, 0.80))]
    rows += [_row("joint + unrolled", s, 0.5, t) for s, t in ((0, 0.74), (1, 0.77))]
    rows += [_row("joint + IFT (Hessian)", s, 0.5, t) for s, t in ((0, 0.70), (1, 0.79))]
    goal = ht.summary(rows)["goal"]
    assert goal["joint + unrolled"] == {"test_at_half": 0.755, "score_function_at_full": 0.75,
                                        "reached": True}
    assert not goal["joint + IFT (Hessian)"]["reached"]  # 0.745 < 0.75
    rows += [_row("reference", 0, 1.0, t, val=v, grid_weight_decay=wd)
             for wd, t, v in ((0.0, 0.6, 0.5), (1e-2, 0.9, 0.7), (1e-1, 0.95, 0.6))]
    text = ht.markdown(rows)
    assert "test 0.9000" in text and "decays picked [0.01]" in text  # picked by validation
    assert "0.7500 ± 0.0500" in text  # score function at T: mean ± standard error
