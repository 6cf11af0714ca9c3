"""PolicyOracle: sampling of every hyperparameter type, conditional scopes, objective
direction on bandits, failed trials, a growing space, and exact resume."""
import json
import math

import keras_tuner as kt
import numpy as np
import pytest

from tf_enas.tuner import PolicyOracle
from tf_enas.tuner.policy_oracle import (PolicyUpdate, centered_ranks, best_new_draw,
                                         top_weights)
from tests.tuner import toy

Status = kt.engine.trial.TrialStatus


def _tuner(tmp_path, oracle, hypermodel, score_fn, name="p", **kwargs):
    return toy.ScoreTuner(oracle, hypermodel, score_fn, directory=str(tmp_path),
                          project_name=name, **kwargs)


def assert_same_controller(a, b, rtol=1e-5, atol=2e-5):
    """Two encoded controller states: the same layout, step counts and RNG state, and the
    same weights and Adam moments up to float round-off. TensorFlow does not fix the order
    in which a traced gradient sums its contributions, so two traces of the same update
    differ in the last bits, and Adam's m/√v turns that into up to 1.7e-6 in a weight with
    a near-zero gradient after ten trials (seen in CI). atol is 1/1000 of one Adam step at
    the oracle's learning rate 0.02: a weight or moment that was not restored moves the
    weights by O(learning rate)."""
    a, b = (PolicyOracle._decode_state(s) for s in (a, b))
    assert a["layout"] == b["layout"]
    np.testing.assert_array_equal(a["rng"], b["rng"])
    assert a["variables"]["num_updates"] == b["variables"]["num_updates"]
    assert a["optimizer"]["iteration"] == b["optimizer"]["iteration"]
    for table in ("variables", "optimizer"):
        assert a[table].keys() == b[table].keys()
        for k in a[table]:
            np.testing.assert_allclose(a[table][k], b[table][k], rtol=rtol, atol=atol,
                                       err_msg=f"{table} {k}")


def _controller_arrays(oracle):
    oracle.controller
    return {k: v for k, v in oracle._export()["variables"].items()
            if k.startswith(("w:", "emb:"))}


def every_type(hp):
    hp.Choice("c_str", ["a", "b", "c"])
    hp.Choice("c_int", [1, 2, 4])
    hp.Choice("c_float", [0.1, 0.5])
    hp.Boolean("flag")
    hp.Fixed("fixed", 7)
    hp.Int("i_lin", 1, 10)
    hp.Int("i_step", 0, 20, step=5)
    hp.Int("i_log_step", 2, 32, step=2, sampling="log")
    hp.Int("i_log", 1, 1000, sampling="log")
    hp.Int("i_rlog", 1, 100, sampling="reverse_log")
    hp.Int("i_big", 0, 10 ** 6)
    hp.Float("f_lin", -1.0, 1.0)
    hp.Float("f_step", 0.0, 1.0, step=0.25)
    hp.Float("f_log", 1e-4, 1e-1, sampling="log")
    hp.Float("f_log_step", 1e-3, 10.0, step=10, sampling="log")
    hp.Float("f_rlog", 0.5, 0.999, sampling="reverse_log")


def test_init_is_lazy_and_state_is_json_safe_before_any_trial():
    oracle = PolicyOracle(objective=kt.Objective("score", "max"), max_trials=3, seed=1)
    hp = kt.HyperParameters()
    every_type(hp)
    oracle.update_space(hp)
    assert oracle._controller is None  # nothing built in TensorFlow yet
    json.dumps(oracle.get_state())


def test_every_type_sampled_within_bounds_step_and_as_plain_values():
    hp = kt.HyperParameters()
    every_type(hp)
    oracle = PolicyOracle(objective=kt.Objective("score", "max"), hyperparameters=hp, seed=3)
    seen = {}
    for i in range(25):
        values = oracle.populate_space(str(i))["values"]
        assert set(values) == {h.name for h in hp.space}
        proto_hp = hp.copy()
        proto_hp.values = values
        proto_hp.to_proto()  # numpy scalars would raise here
        json.dumps(values)
        for name, v in values.items():
            seen.setdefault(name, set()).add(v)
    types = {"c_str": str, "c_int": int, "c_float": float, "flag": bool, "fixed": int}
    for name, t in types.items():
        assert all(type(v) is t for v in seen[name]), name
    assert seen["fixed"] == {7}
    assert seen["c_str"] <= {"a", "b", "c"} and seen["c_int"] <= {1, 2, 4}
    assert seen["c_float"] <= {0.1, 0.5} and seen["flag"] <= {False, True}
    for h in hp.space:
        if type(h).__name__ not in ("Int", "Float"):
            continue
        t = int if type(h).__name__ == "Int" else float
        for v in seen[h.name]:
            assert type(v) is t and h.min_value <= v <= h.max_value, (h.name, v)
    assert all((v - 0) % 5 == 0 for v in seen["i_step"])
    assert seen["i_log_step"] <= {2, 4, 8, 16, 32}
    assert all(any(math.isclose(v, 0.25 * k) for k in range(5)) for v in seen["f_step"])
    assert all(any(math.isclose(v, 10.0 ** e) for e in range(-3, 2)) for v in seen["f_log_step"])
    # decisions with many values were explored, not stuck at one value
    assert len(seen["i_lin"]) >= 4 and len(seen["f_log"]) >= 4
    assert "fixed" not in [d.name for d in oracle.mapping().decisions]


@pytest.mark.parametrize("options", [{}, {"update": PolicyUpdate()}],
                         ids=["density_ratio", "reinforce"])
def test_conditional_scopes_only_active_values_and_masked_update(tmp_path, options):
    oracle = PolicyOracle(objective=kt.Objective("score", "max"), max_trials=16, seed=5,
                          **options)
    tuner = _tuner(tmp_path, oracle, toy.conditional_space, toy.conditional_score)
    tuner.search(verbose=0)
    models = set()
    keys = {d.name: d.key for d in oracle.mapping().decisions}
    for tid, trial in oracle.trials.items():
        v = trial.hyperparameters.values
        expected = {"model", "lr"} | ({"units"} if v["model"] == "mlp" else
                                      {"kernel", "pool"} | ({"pool_size"} if v["pool"] else set()))
        assert set(v) == expected, v
        assert set(oracle._actions[tid]) == {keys[n] for n in expected}
        models.add(v["model"])
    assert models == {"mlp", "cnn"}
    steps = oracle.update.steps  # controller steps per scored trial
    assert len(oracle.rewards) == 16
    assert int(oracle.controller.num_updates.numpy()) == 16 * steps

    # The first update on an "mlp" trial leaves the heads of the cnn-only decisions
    # untouched (masked: no log-prob, no entropy) and moves the active ones.
    fresh = PolicyOracle(objective=kt.Objective("score", "max"), max_trials=60, seed=5,
                         hyperparameters=oracle.get_space(), max_consecutive_failed_trials=99,
                         **options)
    fresh._set_project_dir(str(tmp_path), "fresh")
    for i in range(50):
        trial = fresh.create_trial(f"t{i}")
        if trial.hyperparameters.values["model"] == "mlp":
            break
        fresh.end_trial(kt.engine.trial.Trial(trial.hyperparameters, trial.trial_id,
                                              Status.FAILED))  # no score yet: no step
    assert int(fresh.controller.num_updates.numpy()) == 0
    before = _controller_arrays(fresh)
    fresh.update_trial(trial.trial_id, {"score": 1.0})
    trial.status = Status.COMPLETED
    fresh.end_trial(trial)
    after = _controller_arrays(fresh)
    assert int(fresh.controller.num_updates.numpy()) == steps
    for name in ("kernel", "pool", "pool_size"):
        np.testing.assert_array_equal(before["w:" + keys[name]], after["w:" + keys[name]])
    for name in ("model", "units", "lr"):
        assert not np.array_equal(before["w:" + keys[name]], after["w:" + keys[name]]), name


DENSITY_RATIO = dict(update=PolicyUpdate(rule="density_ratio", steps=3), candidates=24)


@pytest.mark.parametrize("options", [{}, DENSITY_RATIO], ids=["reinforce", "density_ratio"])
@pytest.mark.parametrize("direction, table, best", [
    ("max", {"a": 0.2, "b": 1.0, "c": 0.4}, "b"),  # accuracy-like: highest wins
    ("min", {"a": 0.9, "b": 0.5, "c": 0.1}, "c"),  # loss-like: lowest wins (max would pick a)
])
def test_bandit_policy_ends_on_the_best_arm(tmp_path, direction, table, best, options):
    oracle = PolicyOracle(objective=kt.Objective("score", direction), max_trials=30, seed=1,
                          **options)
    _tuner(tmp_path, oracle, lambda hp: _arm_and_pad(hp, table),
           lambda v: table[v["arm"]]).search(verbose=0)
    assert len(oracle.end_order) == 30
    # the arm's distribution after the pad the policy prefers (density ratio's l is fitted
    # to the best trials' pads only, REINFORCE's policy has learned the arm after any pad)
    p = oracle.probabilities("arm", oracle.most_likely_values() if options else None)
    assert max(p, key=p.get) == best and p[best] > 0.5, p
    later = [oracle.trials[t].hyperparameters.values["arm"] for t in oracle.start_order[10:]]
    assert max(table, key=later.count) == best, later
    assert oracle.most_likely_values()["arm"] == best


def _arm_and_pad(hp, arms):
    """A bandit arm and a pad decision that does not change the score (the oracle never
    repeats a configuration, so a bare 3-armed bandit would end after 3 trials)."""
    hp.Choice("pad", list(range(20)))
    return hp.Choice("arm", list(arms))


@pytest.mark.filterwarnings("ignore:All-NaN")  # keras-tuner, on the NaN score
def test_failed_trials_get_the_worst_reward_and_never_stop_the_search(tmp_path):
    def score(v):
        if v["arm"] == "a":
            raise ValueError("this arm crashes")
        return {"b": 0.7, "c": float("nan")}[v["arm"]] if v["arm"] != "d" else 0.2

    oracle = PolicyOracle(objective=kt.Objective("score", "max"), max_trials=16, seed=2,
                          max_consecutive_failed_trials=100)
    _tuner(tmp_path, oracle, lambda hp: _arm_and_pad(hp, "abcd"), score).search(verbose=0)
    assert len(oracle.end_order) == 16
    scored = []
    for tid in oracle.end_order:
        arm = oracle.trials[tid].hyperparameters.values["arm"]
        r = oracle.rewards[tid]
        if arm in ("b", "d"):
            assert not r["failed"] and r["reward"] == pytest.approx({"b": 0.7, "d": 0.2}[arm])
            scored.append(r["reward"])
        else:  # crashed (a) or NaN score (c): FAILED, worst reward seen so far
            assert oracle.trials[tid].status == Status.FAILED
            assert r["failed"] and r["reward"] == (min(scored) if scored else None)
    n_scored = sum(r["reward"] is not None for r in oracle.rewards.values())
    assert int(oracle.controller.num_updates.numpy()) == n_scored * oracle.update.steps

    # A trial ended as COMPLETED without any metric: keras-tuner's base Oracle raises
    # here; this one marks it invalid (→ FAILED) and gives it the worst reward.
    oracle.max_trials = 20
    trial = oracle.create_trial("direct")
    trial.status = Status.COMPLETED
    oracle.end_trial(trial)
    assert oracle.trials[trial.trial_id].status == Status.FAILED
    assert oracle.rewards[trial.trial_id] == {"reward": min(scored), "failed": True}


def test_space_that_grows_rebuilds_the_controller_keeping_what_it_can(tmp_path):
    def grows(hp):  # keras-tuner discovers c1, c2 only when a trial builds with n > 1
        for i in range(hp.Int("n", 1, 3)):
            hp.Choice(f"c{i}", ["x", "y", "z"])

    score = lambda v: sum(v.get(f"c{i}") == "z" for i in range(v["n"])) + 0.1 * v["n"]
    oracle = PolicyOracle(objective=kt.Objective("score", "max"), max_trials=14, seed=4)
    assert oracle.update.rule == "density_ratio"  # the default
    tuner = _tuner(tmp_path, oracle, grows, score)
    assert [d.name for d in oracle.mapping().decisions] == ["n", "c0"]
    tuner.search(verbose=0)
    decisions = oracle.mapping().decisions
    assert [d.name for d in decisions] == ["n", "c0", "c1", "c2"]
    assert oracle.rebuilds >= 1
    # every trial, old layout or new
    assert int(oracle.controller.num_updates.numpy()) == 14 * oracle.update.steps
    assert any(decisions[3].key in oracle._actions[t] for t in oracle.start_order)

    # One more hyperparameter: everything known survives the rebuild, bit for bit.
    again = PolicyOracle(objective=kt.Objective("score", "max"), seed=4)
    again.set_state(json.loads(json.dumps(oracle.get_state())))
    again.controller
    before = again._export()
    again.update_space(_grown_space(4))
    again._ensure_controller(again.mapping().layout)
    after = again._export()
    new_key = again.mapping().decisions[4].key
    networks = ["", "contrast/"]  # the density-ratio rule's l and g each get new heads
    new = {f"{net}{v}:{new_key}" for net in networks for v in ("w", "emb")}
    assert set(after["variables"]) - set(before["variables"]) == new
    assert {k.rsplit("_", 2)[0] for k in set(after["optimizer"]) - set(before["optimizer"])} \
        == {k.replace("/", "_") for k in new}  # their Adam moments (Keras's slot names)
    for table in ("variables", "optimizer"):  # weights, Adam state, baseline, counts
        for k, a in before[table].items():
            np.testing.assert_array_equal(a, after[table][k], err_msg=k)
    np.testing.assert_array_equal(before["rng"], after["rng"])
    assert again.rebuilds == oracle.rebuilds + 1


def _grown_space(n):
    hp = kt.HyperParameters()
    hp.Int("n", 1, 3)
    for i in range(n):
        hp.Choice(f"c{i}", ["x", "y", "z"])
    return hp


@pytest.mark.parametrize("options", [{}, DENSITY_RATIO], ids=["reinforce", "density_ratio"])
def test_reload_continues_with_the_same_controller_state(tmp_path, options):
    def run(name, crash_at=None, overwrite=True):
        oracle = PolicyOracle(objective=kt.Objective("score", "max"), max_trials=10, seed=9,
                              **options)
        tuner = _tuner(tmp_path, oracle, toy.conditional_space, toy.conditional_score,
                       name=name, crash_at=crash_at, overwrite=overwrite)
        return oracle, tuner

    reference, tuner = run("reference")
    tuner.search(verbose=0)

    interrupted, tuner = run("resumed", crash_at="06")
    with pytest.raises(kt.errors.FatalError):
        tuner.search(verbose=0)
    with open(tmp_path / "resumed" / "oracle.json") as f:
        saved = json.load(f)["policy"]
    resumed, tuner = run("resumed", overwrite=False)
    assert resumed._controller is None  # lazily rebuilt from the state
    assert resumed.get_state()["policy"] == saved
    resumed.controller  # decode → build → import → export: bit-identical to what was saved
    assert resumed._controller is not None and resumed.get_state()["policy"] == saved
    tuner.search(verbose=0)

    assert resumed.start_order == reference.start_order
    for tid in reference.start_order:
        assert (resumed.trials[tid].hyperparameters.values
                == reference.trials[tid].hyperparameters.values)
    ref_state, res_state = reference.get_state()["policy"], resumed.get_state()["policy"]
    assert_same_controller(res_state["controller"], ref_state["controller"])
    assert res_state["rewards"] == ref_state["rewards"]
    assert res_state["actions"] == ref_state["actions"]


def test_update_ignores_stale_values_from_the_proto_round_trip(tmp_path):
    hp = kt.HyperParameters()
    toy.conditional_space(hp)
    oracles = [PolicyOracle(objective=kt.Objective("score", "max"), seed=6, max_trials=50,
                            hyperparameters=hp.copy()) for _ in range(2)]
    for n, o in enumerate(oracles):
        o._set_project_dir(str(tmp_path), f"o{n}")
    for i in range(4):
        trials = [o.create_trial("w") for o in oracles]
        assert trials[0].hyperparameters.values == trials[1].hyperparameters.values
        for o, t in zip(oracles, trials):
            o.update_trial(t.trial_id, {"score": float(i)})
            t.status = Status.COMPLETED
        # the worker's copy comes back through the proto, with a stale inactive value
        wire = kt.engine.trial.Trial.from_proto(trials[1].to_proto())
        inactive = "kernel" if wire.hyperparameters.values["model"] == "mlp" else "units"
        wire.hyperparameters.values[inactive] = 5 if inactive == "kernel" else 16
        oracles[0].end_trial(trials[0])
        oracles[1].end_trial(wire)
    assert_same_controller(*(o.get_state()["policy"]["controller"] for o in oracles))
    assert [d.key for d in oracles[1].mapping().decisions] == \
        [d.key for d in oracles[0].mapping().decisions]


def test_no_duplicate_trials_and_stop_on_an_exhausted_space(tmp_path):
    # keras-tuner's own oracles run the 4 configurations of two Booleans and stop
    oracle = PolicyOracle(objective=kt.Objective("score", "max"), max_trials=15, seed=3)
    _tuner(tmp_path, oracle, lambda hp: (hp.Boolean("x"), hp.Boolean("y")),
           lambda v: v["x"] + 2 * v["y"]).search(verbose=0)
    runs = [tuple(sorted(oracle.trials[t].hyperparameters.values.items()))
            for t in oracle.start_order]
    assert sorted(runs) == sorted({(("x", x), ("y", y)) for x in (False, True)
                                   for y in (False, True)})
    assert oracle.create_trial("late").status == Status.STOPPED

    # max_trials=2 on a two-valued choice: both values, for every seed tried
    for seed in range(1, 6):
        oracle = PolicyOracle(objective=kt.Objective("score", "max"), max_trials=2, seed=seed)
        _tuner(tmp_path, oracle, lambda hp: hp.Choice("c", ["u", "v"]),
               lambda v: float(v["c"] == "v"), name=f"two{seed}").search(verbose=0)
        assert sorted(oracle.trials[t].hyperparameters.values["c"]
                      for t in oracle.start_order) == ["u", "v"], seed


def test_rank_and_top_utilities_by_hand():
    np.testing.assert_allclose(centered_ranks([3.0, 1.0, 2.0, 2.0]), [0.5, -0.5, 0.0, 0.0])
    np.testing.assert_allclose(centered_ranks([7.0]), [0.0])
    # μ = 2: the best gets ln 2.5, the second ln 2.5 − ln 2, the rest 0; centered; max 1
    w = np.array([0.0, math.log(2.5), math.log(2.5) - math.log(2), 0.0])
    w -= w.mean()
    np.testing.assert_allclose(top_weights([1.0, 4.0, 3.0, 2.0]), w / np.abs(w).max(),
                               rtol=1e-6)
    # a tie across the cut shares its places' weights: 4 first, the two 3s split
    # (ln 2.5 − ln 2 + 0) / 2 each, 1 last; equal rewards everywhere weigh nothing
    w = np.array([math.log(2.5), (math.log(2.5) - math.log(2)) / 2,
                  (math.log(2.5) - math.log(2)) / 2, 0.0])
    w -= w.mean()
    np.testing.assert_allclose(top_weights([4.0, 3.0, 3.0, 1.0]), w / np.abs(w).max(),
                               rtol=1e-6)
    np.testing.assert_array_equal(top_weights([2.0, 2.0, 2.0]), [0.0, 0.0, 0.0])
    for bad in (dict(reward="rank", replay=False), dict(reward="top", replay=False),
                dict(reward="best"), dict(steps=0), dict(rule="tpe"), dict(startup=-1),
                dict(rule="density_ratio", reward="raw", replay=False)):
        with pytest.raises(ValueError, match="PolicyUpdate"):
            PolicyUpdate(**bad).validate()


def test_rank_replay_update_learns_the_best_arm(tmp_path):
    oracle = PolicyOracle(objective=kt.Objective("score", "min"), max_trials=30, seed=2,
                          update=PolicyUpdate(reward="rank", replay=True, steps=2))
    table = {"a": 0.9, "b": 0.5, "c": 0.1}
    _tuner(tmp_path, oracle, lambda hp: _arm_and_pad(hp, table),
           lambda v: table[v["arm"]]).search(verbose=0)
    # every scored trial is replayed: two steps per trial
    assert int(oracle.controller.num_updates.numpy()) == 2 * 30
    later = [oracle.trials[t].hyperparameters.values["arm"] for t in oracle.start_order[10:]]
    assert max(table, key=later.count) == "c", later
    assert oracle.most_likely_values()["arm"] == "c"


def test_best_new_draw_is_the_most_probable_unseen_configuration():
    # 2 decisions × 3 values: 256 draws hold every configuration (for this seed), so the
    # choice is the argmax over all unseen ones of Π_k π(a_k | a_<k), enumerated with the
    # controller's step-by-step probabilities
    from tf_enas.controller import Controller, ControllerConfig
    from tf_enas.space import SearchSpace

    space = SearchSpace(choices={"x": (0, 1, 2), "y": (0, 1, 2)})
    controller = Controller(space, ControllerConfig(lstm_size=8, tanh_constant=2.5), seed=3)
    configs = [np.array([x, y], np.int32) for x in range(3) for y in range(3)]
    prob = {c.tobytes(): controller.probabilities(0, c[None])[0][c[0]]
            * controller.probabilities(1, c[None])[0][c[1]] for c in configs}
    seen = {max(prob, key=prob.get)}
    ones = np.ones(2, np.float32)
    child, _, _ = best_new_draw(controller, 256, lambda row: (row, ones, row.tobytes()),
                                  lambda key: key not in seen)
    unseen = {k: p for k, p in prob.items() if k not in seen}
    assert child.tobytes() == max(unseen, key=unseen.get)
    assert best_new_draw(controller, 4, lambda row: (row, ones, row.tobytes()),
                           lambda key: False) is None
