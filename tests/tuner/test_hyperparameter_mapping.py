"""HyperParameters → decisions: grids against closed forms, order, activity, proto round trip."""
import math

import keras_tuner as kt
import numpy as np
import pytest

from tf_enas.tuner.hyperparameter_mapping import HyperParameterMapping, hp_key, value_grid
from tests.tuner import toy


def _hp(fn):
    hp = kt.HyperParameters()
    fn(hp)
    return hp.space[-1]


Q = [(k + 0.5) / 10 for k in range(10)]  # the default quantile grid


@pytest.mark.parametrize("make, expected", [
    (lambda hp: hp.Choice("c", ["a", "b", "c"]), ("a", "b", "c")),
    (lambda hp: hp.Choice("c", [4, 1, 2]), (4, 1, 2)),  # the user's order
    (lambda hp: hp.Boolean("b"), (False, True)),
    (lambda hp: hp.Int("i", 1, 6), (1, 2, 3, 4, 5, 6)),
    (lambda hp: hp.Int("i", 0, 20, step=5), (0, 5, 10, 15, 20)),
    (lambda hp: hp.Int("i", 0, 22, step=5), (0, 5, 10, 15, 20)),
    (lambda hp: hp.Int("i", 2, 32, step=2, sampling="log"), (2, 4, 8, 16, 32)),
    (lambda hp: hp.Int("i", 1, 100, step=10, sampling="reverse_log"), (1, 91, 100)),
    (lambda hp: hp.Float("f", 0.0, 1.0, step=0.25), (0.0, 0.25, 0.5, 0.75, 1.0)),
    (lambda hp: hp.Float("f", 1e-3, 10.0, step=10, sampling="log"),
     (1e-3, 1e-2, 1e-1, 1.0, 10.0)),
    (lambda hp: hp.Float("f", -1.0, 1.0), tuple(-1 + 2 * q for q in Q)),
    (lambda hp: hp.Float("f", 1e-4, 1e-1, sampling="log"),
     tuple(1e-4 * 1000 ** q for q in Q)),
    (lambda hp: hp.Float("f", 0.5, 0.999, sampling="reverse_log"),
     tuple(sorted(0.999 + 0.5 - 0.5 * (0.999 / 0.5) ** (1 - q) for q in Q))),
    (lambda hp: hp.Int("i", 1, 1000, sampling="log"),
     tuple(sorted({int(1001 ** q) for q in Q}))),
])
def test_grids_match_closed_forms(make, expected):
    grid = value_grid(_hp(make))
    assert len(grid) == len(expected)
    for g, e in zip(grid, expected):
        assert type(g) is type(e)
        if isinstance(e, float):
            assert g == pytest.approx(e, rel=1e-9, abs=1e-12)
        else:  # strings, booleans and ints compare exactly
            assert g == e


def test_fixed_is_no_decision_and_long_step_grids_fall_back_to_quantiles():
    assert value_grid(_hp(lambda hp: hp.Fixed("x", 3))) is None
    grid = value_grid(_hp(lambda hp: hp.Int("big", 0, 10 ** 6)), grid_size=8, max_categories=64)
    assert len(grid) == 8 and all(type(v) is int and 0 <= v <= 10 ** 6 for v in grid)
    # quantile q_k → index ⌊q_k·n⌋ of the step grid (n = 10⁶ + 1 values; ±1 for rounding)
    expected = [int(q * (10 ** 6 + 1)) for q in [(k + 0.5) / 8 for k in range(8)]]
    assert all(abs(g - e) <= 1 for g, e in zip(grid, expected))
    hp = kt.HyperParameters()
    hp.Fixed("x", 3)
    hp.Choice("single", [5])
    hp.Choice("c", [1, 2])
    m = HyperParameterMapping(hp)
    assert [d.name for d in m.decisions] == ["c"]
    assert m.resolve(lambda k, child: 1)[2] == {"x": 3, "single": 5, "c": 2}


def test_conditional_activity_and_order_survive_a_proto_round_trip():
    hp = kt.HyperParameters()
    toy.conditional_space(hp)
    for build in (hp, kt.HyperParameters.from_proto(hp.to_proto())):
        m = HyperParameterMapping(build)
        names = [d.name for d in m.decisions]
        assert sorted(names) == sorted(["model", "units", "kernel", "pool", "pool_size", "lr"])
        assert names.index("model") < names.index("units")
        assert names.index("model") < names.index("kernel") < names.index("pool_size")
        assert names.index("pool") < names.index("pool_size")
        # pick the last value of every active decision: model=cnn, pool=True
        last = lambda k, child: len(m.decisions[k].values) - 1
        child, mask, values = m.resolve(last)
        assert set(values) == {"model", "kernel", "pool", "pool_size", "lr"}
        assert values["model"] == "cnn" and values["pool"] is True
        active = {m.decisions[k].name for k in np.flatnonzero(mask)}
        assert active == set(values)
        assert child[names.index("units")] == 0  # inactive: canonical index 0
        # first values: model=mlp → only units and lr besides model
        child, mask, values = m.resolve(lambda k, child: 0)
        assert set(values) == {"model", "units", "lr"}
    keys = {hp_key(h) for h in hp.space}
    assert keys == {hp_key(h) for h in kt.HyperParameters.from_proto(hp.to_proto()).space}


def test_values_are_plain_python():
    hp = kt.HyperParameters()
    hp.Choice("c", [np.float64(0.5), np.float64(2.0)])  # float subclasses pass keras-tuner
    hp.Float("f", 0.0, 1.0)
    m = HyperParameterMapping(hp)
    _, _, values = m.resolve(lambda k, child: 1)
    assert type(values["c"]) is float and type(values["f"]) is float
    assert math.isclose(values["f"], 0.15)
