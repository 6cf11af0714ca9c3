"""Search methods on a lookup table (tabular.Table), each with the same evaluations.

``run(table, method, seed, evaluations)`` reseeds the table's noise with `seed`, lets the
method propose `evaluations` configurations, and returns one JSON-safe row:

    {benchmark, dataset, method, seed, evaluations, regret_curve, final_regret,
     normalized_final_regret, seconds, overhead_ms, best_config}

regret_curve[i] is the regret (table.regret) of the configuration with the best
*observed* (noisy) value among the first i + 1 evaluations (the first such on ties);
normalized regret divides by |best − median| of the table's means. overhead_ms is the
median over evaluations of the method's own time before each (everything but the lookup;
the median leaves out one-time costs such as TensorFlow's tracing). best_config is the
final best-observed configuration (SearchSpace.to_string).

Methods: "controller" (tf_enas's Controller run directly, drawing and learning exactly
as PolicyOracle does: a policy step after each evaluation, no repeated configuration,
`candidates` policy draws per proposal; REINFORCE, `reinforce_options()`),
"controller_density_ratio" (the same with PolicyOracle's default rule,
`density_ratio_options()`: TPE's rule with the policy network as its density,
DensityRatioController), "policy_oracle" (PolicyOracle in a keras-tuner BaseTuner, with
its defaults: the same trials as "controller_density_ratio" for the same seed; given
options, the same trials as "controller" given them), keras-tuner's "kt_random" and
"kt_bayesian" oracles (keras-tuner and the controllers get seed + 1: keras-tuner takes 0
as "random"),
Optuna's "optuna_tpe" and "optuna_random" samplers (string grids as categorical, numeric
grids as the integer index of the value, so TPE sees their order).
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time

import numpy as np

from tf_enas.benchmarks.tabular import Table

METHODS = ("controller", "controller_density_ratio", "policy_oracle", "kt_random",
           "kt_bayesian", "optuna_tpe", "optuna_random")


def reinforce_options() -> dict:
    """The "controller" method's options: REINFORCE on the "top" utilities (PolicyUpdate())
    with one plain draw per trial (PolicyOracle's candidates under REINFORCE; chosen on
    nasbench201/cifar10 and hpolib/slice_localization, BENCHMARKS.md tabular section)."""
    from tf_enas.tuner.policy_oracle import PolicyUpdate, default_candidates

    return {"update": PolicyUpdate(), "candidates": default_candidates("reinforce")}


def density_ratio_options() -> dict:
    """The "controller_density_ratio" method's options, PolicyOracle's defaults: ten
    fitting steps per trial (each on at most 32 trials of each set), TPE's 10 uniform
    start-up trials and 24 candidates (chosen on the same tables; BENCHMARKS.md, tabular
    section: 10 steps against 3, fit_batch 32 against all trials)."""
    from tf_enas.tuner.policy_oracle import default_candidates, default_update

    return {"update": default_update(), "candidates": default_candidates("density_ratio")}


class _Tracker:
    """Evaluates configurations on the table and records the regret curve."""

    def __init__(self, table: Table, evaluations: int):
        self.table, self.evaluations = table, evaluations
        self.best_value, self.best_regret, self.curve = None, None, []
        self.best_child = None
        self.gaps, self._last = [], time.perf_counter()  # method's own time per evaluation

    def evaluate(self, child) -> float:
        if len(self.curve) >= self.evaluations:
            raise RuntimeError(f"a method asked for more than {self.evaluations} evaluations")
        start = time.perf_counter()
        self.gaps.append(start - self._last)
        value = self.table.evaluate(child)
        if self.best_value is None or self.table.better(value, self.best_value):
            self.best_value, self.best_regret = value, self.table.regret(child)
            self.best_child = np.asarray(child)
        self.curve.append(self.best_regret)
        self._last = time.perf_counter()
        return value


def _controller(table, tracker, seed, evaluations, config=None, update=None,
                candidates=None):
    from tf_enas.tuner.policy_oracle import (default_candidates, default_controller_config,
                                             policy_step)

    update = (update or reinforce_options()["update"]).validate()
    config = config or default_controller_config(update.rule)
    controller = update.controller(table.space, config, seed + 1)  # as PolicyOracle's seed
    seen, children, rewards = set(), [], []
    for _ in range(evaluations):
        child = _propose(controller, table.space, seen,
                         candidates or default_candidates(update.rule),
                         len(children) >= update.startup, (children, rewards))
        if child is None:  # every configuration was evaluated
            break
        seen.add(child.tobytes())
        reward = table.reward(tracker.evaluate(child))
        children.append(child)
        rewards.append(reward)
        if update.replay:
            policy_step(controller, update, children, rewards)
        else:
            policy_step(controller, update, [child], [reward])


def _propose(controller, space, seen, candidates, from_policy, scored, tries=20):
    """A configuration not in `seen`, chosen as PolicyOracle chooses it
    (policy_oracle.propose, with the controller's RNG), else None (exhausted)."""
    from tf_enas.tuner.policy_oracle import draw, propose

    ones = np.ones(len(space), np.float32)
    as_trial = lambda child: (child, ones, child.tobytes())
    trial = propose(controller, candidates, as_trial, lambda key: key not in seen,
                    lambda: as_trial(np.array([draw(controller.rng, np.ones(d.num_values))
                                               for d in space.decisions], np.int32)),
                    tries, from_policy,
                    (np.reshape(np.asarray(scored[0], np.int32), (-1, len(space))),
                     np.asarray(scored[1], np.float32)))
    return None if trial is None else trial[0]


def _keras_tuner(method, table, tracker, seed, evaluations, config=None, update=None,
                 candidates=None):
    import keras_tuner as kt

    objective = kt.Objective("value", "max" if table.maximize else "min")
    hp = table.space.to_hyperparameters()
    # keras-tuner replaces a seed of 0 by a random one: its oracles get seed + 1
    common = dict(objective=objective, max_trials=evaluations, seed=seed + 1,
                  hyperparameters=hp)
    if method == "policy_oracle":  # the only method here that needs TensorFlow
        from tf_enas.tuner.policy_oracle import PolicyOracle

        oracle = PolicyOracle(controller_config=config, update=update,
                              candidates=candidates, **common)
    elif method == "kt_random":
        oracle = kt.oracles.RandomSearchOracle(**common)
    else:
        oracle = kt.oracles.BayesianOptimizationOracle(**common)

    class TableTuner(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            child = table.space.child_from_values(trial.hyperparameters.values)
            return {"value": tracker.evaluate(child)}

    directory = tempfile.mkdtemp(prefix="tf_enas_tabular_")
    try:
        TableTuner(oracle, hypermodel=lambda h: h.merge(hp.space), directory=directory,
                   project_name=method, overwrite=True).search(verbose=0)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _optuna(method, table, tracker, seed, evaluations):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.TPESampler(seed=seed) if method == "optuna_tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    study = optuna.create_study(direction=table.direction, sampler=sampler)
    decisions = table.space.decisions

    def objective(trial):
        child = []
        for d in decisions:
            if all(isinstance(v, str) for v in d.values):
                child.append(d.values.index(trial.suggest_categorical(d.name, d.values)))
            else:
                child.append(trial.suggest_int(d.name, 0, d.num_values - 1))
        return tracker.evaluate(np.array(child, np.int32))

    study.optimize(objective, n_trials=evaluations)


def run(table: Table | str, method: str, seed: int, evaluations: int, **options) -> dict:
    """One seeded search of `method` on `table`; the row described in the module doc.

    options: config (ControllerConfig), update (PolicyUpdate) and candidates (policy draws
    per evaluation) for "controller", "controller_density_ratio" and "policy_oracle".
    """
    if method not in METHODS:
        raise ValueError(f"unknown tabular method {method!r}; known: {METHODS}")
    if not isinstance(evaluations, int) or evaluations < 1:
        raise ValueError(f"evaluations must be a positive int, got {evaluations!r}")
    if options and method not in ("controller", "controller_density_ratio", "policy_oracle"):
        raise ValueError(f"method {method!r} takes no options, got {sorted(options)}")
    table = Table(table) if isinstance(table, str) else table
    table.reseed(seed)
    tracker = _Tracker(table, evaluations)
    start = time.perf_counter()
    if method == "controller_density_ratio":
        options = density_ratio_options() | options
    if method.startswith("controller"):
        _controller(table, tracker, seed, evaluations, **options)
    elif method.startswith("optuna"):
        _optuna(method, table, tracker, seed, evaluations)
    else:
        _keras_tuner(method, table, tracker, seed, evaluations, **options)
    seconds = time.perf_counter() - start
    n = len(tracker.curve)
    scale = abs(table.best - table.median)
    return {"benchmark": table.benchmark, "dataset": table.dataset, "method": method,
            "seed": int(seed), "evaluations": n, "regret_curve": tracker.curve,
            "final_regret": tracker.curve[-1], "normalized_final_regret":
            tracker.curve[-1] / scale, "seconds": seconds,
            "overhead_ms": 1000 * float(np.median(tracker.gaps)),
            "best_config": table.space.to_string(tracker.best_child)}


def options_of(config=None, update=None, candidates=None) -> dict:
    """The JSON form of the controller options (for reports)."""
    out = {} if candidates is None else {"candidates": candidates}
    if config is not None:
        out["controller_config"] = dataclasses.asdict(config)
    if update is not None:
        out["policy_update"] = dataclasses.asdict(update)
    return out
