"""PolicyOracle: a keras-tuner Oracle whose trials are sampled by tf_enas's LSTM controller.

Switch any keras-tuner search to it with one line, `oracle=PolicyOracle(...)`:

* `populate_space` maps the HyperParameters space to categorical decisions
  (hyperparameter_mapping.py), samples one child from the controller π_φ and returns the
  active values as plain Python values. In a conditional space the decisions are taken in
  order and an inactive one is not decided (index 0, see below), so that
  log π_φ(trial) = Σ_{active k} log π_φ(a_k | a_<k) is the exact log-probability of the
  values the trial runs.
* `end_trial` takes one REINFORCE step on that trial, with R = score for a "max"
  objective and R = −score for a "min" one (multi-objective scores are keras-tuner's
  "min" sum); inactive decisions are masked. A failed or invalid trial, or one that
  reported no objective, gets the worst reward seen so far (no step before any trial
  scored) and never crashes the oracle (keras-tuner's max_consecutive_failed_trials still
  ends a search that only fails).
* The space may grow during the search (keras-tuner discovers hyperparameters lazily): the
  next trial rebuilds the controller for the new decision list and keeps the LSTM, every
  known decision's head and embedding (matched by name and conditions), their Adam
  moments, the Adam step, the baseline, the update count and the RNG state; new
  decisions start from the seeded initialization. Trials sampled before a rebuild are
  scored under the new layout, with the new decisions masked.
* Duplicates are allowed: a policy that has converged keeps proposing its best values.
  A space with nothing to tune runs its defaults once.

`get_state` holds, JSON-safe, the controller's layout, weights, Adam state, baseline,
update count and RNG state, and each trial's sampled indices and reward (keyed by trial
id). A reload restores it bit for bit, so `overwrite=False` resumes the same stream of
trials (later weights equal an uninterrupted run's up to the float summation order of
TensorFlow's traced gradients). The REINFORCE update never reads the trial's values back
from keras-tuner (which, after the gRPC round trip, reorders the space and keeps stale
values of inactive children): it uses the stored indices.

`__init__` builds nothing in TensorFlow (it runs on every worker of a distributed search);
the controller is created on first use, on the chief.
"""
from __future__ import annotations

import base64
import math

import keras_tuner as kt
import numpy as np

from tf_enas.tuner.hyperparameter_mapping import HyperParameterMapping, search_space_of

TrialStatus = kt.engine.trial.TrialStatus


def default_controller_config():
    """Controller settings for trial-level REINFORCE (tens of rewards, not thousands):
    a smaller LSTM, a larger learning rate and logit range, a faster baseline."""
    from tf_enas.controller import ControllerConfig

    return ControllerConfig(lstm_size=32, tanh_constant=2.5, learning_rate=0.02,
                            baseline_decay=0.9, entropy_weight=1e-3)


def _encode(a) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape),
            "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def _decode(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["b64"]), dtype=d["dtype"]).reshape(d["shape"])


class PolicyOracle(kt.Oracle):
    """A keras-tuner Oracle driven by the tf_enas policy controller (REINFORCE per trial).

    Args (besides keras_tuner.Oracle's objective, max_trials, seed, hyperparameters,
    allow_new_entries, tune_new_entries, max_retries_per_trial,
    max_consecutive_failed_trials):
      controller_config: a tf_enas.controller.ControllerConfig (default:
        `default_controller_config()`).
      grid_size: quantiles for an Int/Float without step.
      max_categories: the longest step grid used as is.
    """

    def __init__(self, objective=None, max_trials=10, seed=None, hyperparameters=None,
                 allow_new_entries=True, tune_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, controller_config=None, grid_size=10,
                 max_categories=64):
        super().__init__(objective=objective, max_trials=max_trials,
                         hyperparameters=hyperparameters, allow_new_entries=allow_new_entries,
                         tune_new_entries=tune_new_entries, seed=seed,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials)
        if grid_size < 2 or max_categories < 2:
            raise ValueError(f"grid_size and max_categories must be >= 2, got {grid_size}, "
                             f"{max_categories}")
        self._controller_config = controller_config
        self.grid_size, self.max_categories = int(grid_size), int(max_categories)
        self._controller = None  # built lazily (TensorFlow), see _ensure_controller
        self._layout = None      # [[key, values], ...] of the controller's decisions
        self._pending = None     # encoded controller state from set_state, not loaded yet
        self._actions = {}       # trial_id → {decision key: index} (active decisions)
        self._rewards = {}       # trial_id → {"reward": float | None, "failed": bool}
        self.rebuilds = 0        # controller rebuilds after the space grew
        self.last_update = {}    # logs of the last REINFORCE step

    # --- the controller -------------------------------------------------------------------
    @property
    def controller_config(self):
        if self._controller_config is None:
            self._controller_config = default_controller_config()
        return self._controller_config.validate()

    def mapping(self) -> HyperParameterMapping:
        """The decisions of the current space."""
        return HyperParameterMapping(self.hyperparameters, self.grid_size, self.max_categories)

    @property
    def controller(self):
        """The controller (built on first access for the current space; None when nothing
        is tunable)."""
        if self._controller is None:
            layout = self._pending["layout"] if self._pending else self.mapping().layout
            if layout:
                self._ensure_controller(layout)
        return self._controller

    def _ensure_controller(self, layout):
        """The controller for `layout`, rebuilt (keeping what matches) when it differs."""
        if self._controller is not None and self._layout == layout:
            return self._controller
        from tf_enas.controller import Controller

        if self._controller is not None:
            saved = self._export()
        elif self._pending is not None:
            saved = self._decode_state(self._pending)
        else:
            saved = None
        controller = Controller(search_space_of(layout), self.controller_config,
                                seed=int(self.seed))
        if saved is not None:
            self._import(controller, layout, saved)
            if saved["layout"] != layout:
                self.rebuilds += 1
        self._controller, self._layout, self._pending = controller, layout, None
        return controller

    @staticmethod
    def _named(controller, layout) -> dict:
        named = {"lstm_kernel": controller.lstm_kernel, "lstm_bias": controller.lstm_bias,
                 "g_emb": controller.g_emb}
        for (key, _), w, e in zip(layout, controller.w_choice, controller.choice_emb):
            named["w:" + key] = w
            named["emb:" + key] = e
        missing = {id(v) for v in controller.trainable_variables} - {id(v) for v in named.values()}
        if missing:  # a controller change this oracle would silently not save
            raise NotImplementedError(
                f"the controller has trainable variables PolicyOracle does not save: "
                f"{[v.name for v in controller.trainable_variables if id(v) in missing]}")
        return named

    @staticmethod
    def _slots(controller, var):
        opt = controller.optimizer
        i = opt._get_variable_index(var)  # Keras 3 Adam keeps moments by variable index
        return opt._momentums[i], opt._velocities[i]

    def _export(self) -> dict:
        c, named = self._controller, self._named(self._controller, self._layout)
        slots = {k: self._slots(c, v) for k, v in named.items()}
        return {
            "layout": self._layout,
            "variables": {k: v.numpy() for k, v in named.items()},
            "adam_m": {k: m.numpy() for k, (m, _) in slots.items()},
            "adam_v": {k: v.numpy() for k, (_, v) in slots.items()},
            "adam_iterations": int(c.optimizer.iterations.numpy()),
            "baseline": float(c.baseline.numpy()),
            "num_updates": int(c.num_updates.numpy()),
            "rng_state": c.rng.state.numpy(),
        }

    def _import(self, controller, layout, saved):
        for k, var in self._named(controller, layout).items():
            m, v = self._slots(controller, var)
            for table, dst in (("variables", var), ("adam_m", m), ("adam_v", v)):
                a = saved[table].get(k)
                if a is not None and tuple(a.shape) == tuple(dst.shape):
                    dst.assign(a)
        controller.optimizer.iterations.assign(saved["adam_iterations"])
        controller.baseline.assign(saved["baseline"])
        controller.num_updates.assign(saved["num_updates"])
        controller.rng.reset(np.asarray(saved["rng_state"], np.int64))

    @staticmethod
    def _encode_state(s: dict) -> dict:
        return {"layout": s["layout"],
                **{t: {k: _encode(a) for k, a in s[t].items()}
                   for t in ("variables", "adam_m", "adam_v")},
                "adam_iterations": s["adam_iterations"], "baseline": s["baseline"],
                "num_updates": s["num_updates"], "rng_state": _encode(s["rng_state"])}

    @staticmethod
    def _decode_state(s: dict) -> dict:
        return {"layout": s["layout"],
                **{t: {k: _decode(a) for k, a in s[t].items()}
                   for t in ("variables", "adam_m", "adam_v")},
                "adam_iterations": s["adam_iterations"], "baseline": s["baseline"],
                "num_updates": s["num_updates"], "rng_state": _decode(s["rng_state"])}

    # --- sampling ---------------------------------------------------------------------------
    def _draw(self, p) -> int:
        """Index drawn from probabilities p with the controller's RNG (checkpointed)."""
        import tensorflow as tf

        u = float(self._controller.rng.uniform([], dtype=tf.float64).numpy())
        cdf = np.cumsum(np.asarray(p, np.float64))
        return int(min(np.searchsorted(cdf / cdf[-1], u, side="right"), len(cdf) - 1))

    def populate_space(self, trial_id):
        """Samples the active values of one trial from the policy (plain Python values)."""
        mapping = self.mapping()
        if not len(mapping):
            if self.trials:  # nothing to tune: the defaults ran already
                return {"status": TrialStatus.STOPPED, "values": None}
            return {"status": TrialStatus.RUNNING, "values": mapping.resolve(None)[2]}
        controller = self._ensure_controller(mapping.layout)
        proposal = controller.sample(1)[0].numpy()

        def choose(k, child):
            # The controller's joint sample holds while the walk agrees with it; once an
            # inactive decision differs from its canonical 0, later decisions are drawn one
            # at a time given the canonical prefix.
            if np.array_equal(child[:k], proposal[:k]):
                return int(proposal[k])
            return self._draw(controller.probabilities(k, child[None])[0])

        child, mask, values = mapping.resolve(choose)
        self._actions[trial_id] = {d.key: int(child[k]) for k, d in enumerate(mapping.decisions)
                                   if mask[k]}
        self._rewards.pop(trial_id, None)
        return {"status": TrialStatus.RUNNING, "values": values}

    # --- learning ---------------------------------------------------------------------------
    def _has_objective(self, trial) -> bool:
        """Whether keras-tuner can score the trial (its objective metric has a value)."""
        name = self.objective.name  # "multi_objective" for a list of objectives
        return trial.metrics.exists(name) and trial.metrics.get_best_value(name) is not None

    @kt.synchronized
    def end_trial(self, trial):
        """Ends the trial (keras-tuner's logistics), then one REINFORCE step on it once it
        is final (not sent for a retry)."""
        own = self.trials.get(trial.trial_id)
        if (trial.status == TrialStatus.COMPLETED and own is not None
                and not self._has_objective(own)):
            trial.status = TrialStatus.INVALID
            trial.message = ((trial.message or "") + f"\nthe trial reported no value for "
                             f"the objective {self.objective.name!r}").strip()
        try:
            super().end_trial(trial)
        finally:
            own = self.trials.get(trial.trial_id)
            if (own is not None and trial.trial_id in self.end_order
                    and trial.trial_id not in self._rewards):
                self._reinforce(own)
                self.save()

    def reward(self, trial) -> float | None:
        """R = score ("max") or −score ("min"); None when the trial has no finite score."""
        score = trial.score if trial.status == TrialStatus.COMPLETED else None
        if score is None or not math.isfinite(float(score)):
            return None
        return float(score) if self.objective.direction == "max" else -float(score)

    def _reinforce(self, trial):
        reward = self.reward(trial)
        failed = reward is None
        if failed:
            scored = [r["reward"] for r in self._rewards.values() if not r["failed"]]
            reward = min(scored) if scored else None
        self._rewards[trial.trial_id] = {"reward": reward, "failed": failed}
        actions = self._actions.get(trial.trial_id)
        if reward is None or actions is None:
            return
        layout = self._layout or (self._pending or {}).get("layout")
        if not layout:
            return
        controller = self._ensure_controller(layout)
        keys = [k for k, _ in layout]
        child = np.array([[actions.get(k, 0) for k in keys]], np.int32)
        mask = np.array([[1.0 if k in actions else 0.0 for k in keys]], np.float32)
        self.last_update = {k: float(v) for k, v in controller.update(
            child, np.array([reward], np.float32), mask).items()}

    # --- inspection -------------------------------------------------------------------------
    def probabilities(self, name: str, values: dict | None = None) -> dict:
        """π(name = v | the earlier decisions at `values`, else at index 0) for every v of
        the first decision named `name`: {value: probability}."""
        mapping, values = self.mapping(), values or {}
        controller = self._ensure_controller(mapping.layout)
        k = next((i for i, d in enumerate(mapping.decisions) if d.name == name), None)
        if k is None:
            raise KeyError(f"no decision for hyperparameter {name!r}; decisions: "
                           f"{[d.name for d in mapping.decisions]}")
        child = np.array([[d.values.index(values[d.name]) if values.get(d.name) in d.values
                           else 0 for d in mapping.decisions]], np.int32)
        p = controller.probabilities(k, child)[0]
        return dict(zip(mapping.decisions[k].values, (float(x) for x in p)))

    def most_likely_values(self) -> dict:
        """The greedy trial: each active decision at its most probable value, in order."""
        mapping = self.mapping()
        if not len(mapping):
            return mapping.resolve(None)[2]
        controller = self._ensure_controller(mapping.layout)
        return mapping.resolve(
            lambda k, child: int(np.argmax(controller.probabilities(k, child[None])[0])))[2]

    @property
    def rewards(self) -> dict:
        """trial_id → {"reward", "failed"} for every trial that ended."""
        return dict(self._rewards)

    # --- state ------------------------------------------------------------------------------
    def get_state(self):
        state = super().get_state()
        if self._controller is not None:
            controller = self._encode_state(self._export())
        else:
            controller = self._pending
        state["policy"] = {"controller": controller, "actions": self._actions,
                           "rewards": self._rewards, "rebuilds": self.rebuilds}
        return state

    def set_state(self, state):
        super().set_state(state)
        policy = state.get("policy") or {}
        self._controller, self._layout = None, None
        self._pending = policy.get("controller")
        self._actions = {k: dict(v) for k, v in policy.get("actions", {}).items()}
        self._rewards = {k: dict(v) for k, v in policy.get("rewards", {}).items()}
        self.rebuilds = int(policy.get("rebuilds", 0))
