"""PolicyOracle: a keras-tuner Oracle whose trials are sampled by tf_enas's LSTM controller.

Switch any keras-tuner search to it with one line, `oracle=PolicyOracle(...)`:

* `populate_space` maps the HyperParameters space to categorical decisions
  (hyperparameter_mapping.py), draws a child from the controller π_φ (the best of
  `candidates` draws) and returns the active values as plain Python values. In a
  conditional space the decisions are taken in order and an inactive one is not decided
  (index 0, see below), so that
  log π_φ(trial) = Σ_{active k} log π_φ(a_k | a_<k) is the exact log-probability of the
  values the trial runs.
* `end_trial` updates the controller on the scored trials (see `update`), with R = score
  for a "max" objective and R = −score for a "min" one (multi-objective scores are
  keras-tuner's "min" sum); inactive decisions are masked. A failed or invalid trial, or
  one that reported no objective, gets the worst reward seen so far (no step before any
  trial scored) and never crashes the oracle (keras-tuner's max_consecutive_failed_trials
  still ends a search that only fails).
* The space may grow during the search (keras-tuner discovers hyperparameters lazily): the
  next trial rebuilds the controller for the new decision list and keeps the LSTM, every
  known decision's head and embedding (matched by name and conditions), their Adam
  moments, the Adam step, the baseline, the update count and the RNG state; new
  decisions start from the seeded initialization. Trials sampled before a rebuild are
  scored under the new layout, with the new decisions masked.
* No configuration runs twice (as keras-tuner's own oracles): a sample whose active
  values a trial already ran is drawn again, up to 20 times from the policy, then up to
  20 times uniformly; when all collide the space counts as exhausted and the search
  stops. A space with nothing to tune runs its defaults once.
* `update` (a PolicyUpdate) says how the controller learns. The default
  (`default_update()`): after 10 uniform start-up trials, the policy is fitted as TPE fits
  its densities — l to the best trials, a second network g to the rest, ten Adam steps
  per trial, each on at most 32 random trials of each set (DensityRatioController) — and
  each trial runs the best of 24 draws from l and 24 local moves of good trials by TPE's
  ratio log l − log g. On the tables it was chosen on (NAS-Bench-201 cifar10, HPOLib
  slice_localization; 20 seeds, 200 evaluations) it reached 0.044 and 7.9e-6 mean regret
  against Optuna TPE's 0.076 and 2.7e-5 and REINFORCE's 0.32 and 1.9e-4 (BENCHMARKS.md,
  tabular section); it costs about 29–38 ms of controller time per trial on 2 idle cores
  (REINFORCE: 6–16). `PolicyUpdate()` is the REINFORCE rule: one step on the "top"
  utilities (CMA-ES weights of the better half) of every trial so far, less than half the
  regret of plain REINFORCE (one raw-reward step per trial,
  `PolicyUpdate("raw", replay=False)`) on those tables.
* `candidates` (default by rule, `default_candidates`: 24 for the density ratio, 1 — a
  plain draw — for REINFORCE): each trial runs, of that many draws from π_φ, the new one
  with the highest proposal score (`best_new_draw`: TPE's log l − log g under the
  density-ratio rule, whose candidates also hold as many local moves of good trials;
  log π_φ under REINFORCE, a greedier proposal). With REINFORCE more draws help on some
  tables and hurt on others, and from 8 draws on a 3-armed bandit end undecided between
  its two best arms, both logits at the tanh cap (BENCHMARKS.md, tabular section).

`get_state` holds, JSON-safe, the controller's layout and its Controller.get_state()
(weights, Adam state, baseline, update count, RNG state; each decision's head and
embedding named by the decision's key), and each trial's sampled indices and reward
(keyed by trial id). A reload restores it bit for bit, so `overwrite=False` resumes the
same stream of trials (later weights equal an uninterrupted run's up to the float
summation order of TensorFlow's traced gradients). The controller update never reads the
trial's values back from keras-tuner (which, after the gRPC round trip, reorders the
space and keeps stale values of inactive children): it uses the stored indices.

`__init__` builds nothing in TensorFlow (it runs on every worker of a distributed search);
the controller is created on first use, on the chief. A worker killed in the middle of a
trial is handled by WorkerFaults (worker_faults.py): its trial is re-run or ended FAILED
after `trial_timeout_s` without a call from it, and its reward is learned from once.
"""
from __future__ import annotations

import base64
import dataclasses
import math

import keras_tuner as kt
import numpy as np

from tf_enas.tuner.hyperparameter_mapping import HyperParameterMapping, search_space_of
from tf_enas.tuner.worker_faults import DEFAULT_TRIAL_TIMEOUT_S, WorkerFaults

TrialStatus = kt.engine.trial.TrialStatus


def default_update() -> "PolicyUpdate":
    """PolicyOracle's default: TPE's rule with the policy network as its density, ten
    fitting steps per trial, each on at most 32 trials of each set, after TPE's ten
    uniform start-up trials (chosen on nasbench201/cifar10 and hpolib/slice_localization,
    BENCHMARKS.md tabular section)."""
    return PolicyUpdate(rule="density_ratio", steps=10, startup=10, fit_batch=32)


def default_candidates(rule: str) -> int:
    """Draws per proposal: 24 under the density-ratio rule (TPE's n_ei_candidates, plus as
    many local moves), 1 (a plain draw) under REINFORCE (BENCHMARKS.md, tabular section)."""
    return 24 if rule == "density_ratio" else 1


def default_controller_config(rule: str = "reinforce"):
    """Controller settings for trial-level search (tens of rewards, not thousands): a
    smaller LSTM, a larger learning rate and logit range, a faster baseline. For the
    "density_ratio" rule: no logit cap (a head fitted to one early trial saturates under
    the cap, and its gradient vanishes when better trials arrive) and an entropy bonus
    of 0.1, which keeps the fitted densities from collapsing onto a few trials (TPE's
    prior does that for TPE); both chosen on the same tables (BENCHMARKS.md)."""
    from tf_enas.controller import ControllerConfig

    if rule == "density_ratio":
        return ControllerConfig(lstm_size=32, learning_rate=0.02, entropy_weight=0.1,
                                tanh_constant=None)
    return ControllerConfig(lstm_size=32, tanh_constant=2.5, learning_rate=0.02,
                            baseline_decay=0.9, entropy_weight=1e-3)


@dataclasses.dataclass
class PolicyUpdate:
    """How the controller learns from scored trials. PolicyUpdate() is the REINFORCE rule
    on the "top" utilities; PolicyUpdate("raw", replay=False) plain REINFORCE, one step per
    trial; PolicyOracle's default is `default_update()` (the density-ratio rule).

    rule: "reinforce" — REINFORCE steps of the policy (Controller.update) on the utilities
      of `reward`; "density_ratio" — TPE's rule with the policy network as the density
      (DensityRatioController: l fitted to the best trials, g to the rest, proposals by
      log l − log g; `reward` is not used, the rewards only rank the trials; needs replay).
    startup: trials drawn uniformly at random before the policy proposes (TPE's
      n_startup_trials; the policy learns from them as from every trial).
    reward: "raw" — R itself, against the controller's moving-average baseline; "rank" —
      the centered rank of R among the trials of the step, (rank / (n − 1)) − ½ ∈ [−½, ½]
      (ties share their mean rank; invariant to the scale of the objective); "top" — the
      CMA-ES weights of the better half, ln(μ + ½) − ln(i) for the i-th best of μ = n/2
      (0 for the rest), centered and scaled to a maximum of 1.
    replay: every step on all scored trials so far (each with its own mask), else on the
      newly scored trial only. "rank" and "top" need replay (one trial has no rank).
    steps: controller steps each time a trial is scored (REINFORCE steps, or Adam steps
      of the density-ratio fits).
    fit_batch: density ratio only — each fitting step fits l and g to a fresh random subset
      of at most this many of their trials (None: all); the cost of a step then stops
      growing with the number of trials.
    """

    reward: str = "top"
    replay: bool = True
    steps: int = 1
    rule: str = "reinforce"
    startup: int = 0
    fit_batch: int | None = None

    def validate(self):
        if self.rule not in ("reinforce", "density_ratio"):
            raise ValueError(f"PolicyUpdate rule must be 'reinforce' or 'density_ratio', "
                             f"got {self.rule!r}")
        if self.rule == "density_ratio" and not self.replay:
            raise ValueError("PolicyUpdate rule='density_ratio' needs replay=True (it fits "
                             "every scored trial)")
        if self.reward not in ("raw", "rank", "top"):
            raise ValueError(f"PolicyUpdate reward must be 'raw', 'rank' or 'top', got "
                             f"{self.reward!r}")
        if self.reward != "raw" and not self.replay:
            raise ValueError(f"PolicyUpdate reward={self.reward!r} needs replay=True")
        if not isinstance(self.startup, int) or self.startup < 0:
            raise ValueError(f"PolicyUpdate startup must be an int >= 0, got {self.startup!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"PolicyUpdate steps must be an int >= 1, got {self.steps!r}")
        if self.fit_batch is not None and (self.rule != "density_ratio" or not isinstance(
                self.fit_batch, int) or self.fit_batch < 1):
            raise ValueError(f"PolicyUpdate fit_batch must be None or an int >= 1 with "
                             f"rule='density_ratio', got fit_batch={self.fit_batch!r}, "
                             f"rule={self.rule!r}")
        return self

    def controller(self, space, config, seed):
        """The controller this rule trains: a Controller, or a DensityRatioController."""
        if self.rule == "density_ratio":
            from tf_enas.density_ratio_controller import DensityRatioController

            return DensityRatioController(space, config, seed=seed, fit_batch=self.fit_batch)
        from tf_enas.controller import Controller

        return Controller(space, config, seed=seed)


def centered_ranks(rewards) -> np.ndarray:
    """(rank / (n − 1)) − ½ of each reward (0 = lowest; ties get their mean rank)."""
    r = np.asarray(rewards, np.float64)
    if r.size < 2:
        return np.zeros(r.shape, np.float32)
    ranks = np.empty(r.size)
    ranks[np.argsort(r, kind="stable")] = np.arange(r.size)
    _, inverse, counts = np.unique(r, return_inverse=True, return_counts=True)
    ranks = np.bincount(inverse, ranks)[inverse] / counts[inverse]
    return (ranks / (r.size - 1) - 0.5).astype(np.float32)


def top_weights(rewards) -> np.ndarray:
    """PolicyUpdate's "top" utilities: CMA-ES weights of the better half, centered, max 1
    (equal rewards share the mean of their places' weights)."""
    r = np.asarray(rewards, np.float64)
    mu = r.size // 2
    if mu < 1:
        return np.zeros(r.shape, np.float32)
    w = np.zeros(r.size)
    best_first = np.argsort(-r, kind="stable")
    w[best_first[:mu]] = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    _, tie, counts = np.unique(r, return_inverse=True, return_counts=True)
    w = np.bincount(tie, w)[tie] / counts[tie]
    w -= w.mean()
    scale = np.abs(w).max()
    return (w / scale if scale > 0 else w).astype(np.float32)


def policy_step(controller, update: PolicyUpdate, children, rewards, masks=None) -> dict:
    """`update.steps` steps of controller.update (REINFORCE on the utilities of
    update.reward, or a DensityRatioController's two fits) on children [n, D] with rewards
    [n] (higher is better; all scored trials when update.replay, else the new ones);
    returns the last step's logs as floats."""
    children = np.asarray(children, np.int32)
    rewards = np.asarray(rewards, np.float32)
    masks = None if masks is None else np.asarray(masks, np.float32)
    if update.rule == "density_ratio":
        pass  # DensityRatioController ranks the rewards itself
    elif update.reward == "rank":
        rewards = centered_ranks(rewards)
    elif update.reward == "top":
        rewards = top_weights(rewards)
    logs = controller.update_steps(children, rewards, masks, update.steps)
    return {k: float(v) for k, v in logs.items()}


def best_new_draw(controller, candidates: int, resolve, is_new, scored=None):
    """The trial to run: of `candidates` draws from π_φ, the one not run before with the
    highest `controller.proposal_score` over its active decisions (log π_φ; log l − log g
    for a DensityRatioController; the first on ties); None when every draw
    repeats a trial. resolve(row) → (child [D], mask [D], values); is_new(values) → bool.
    candidates = 1 is a plain draw from the policy. scored: (children [n, D], rewards [n])
    of the trials so far, for a controller whose `candidate_rows` uses them."""
    rows = controller.candidate_rows(candidates, scored)
    drawn = [resolve(row) for row in rows]
    new = np.array([is_new(values) for _, _, values in drawn])
    if not new.any():
        return None
    if len(drawn) == 1:
        return drawn[0]
    score = controller.proposal_score(
        np.stack([c for c, _, _ in drawn]).astype(np.int32),
        mask=np.stack([m for _, m, _ in drawn]).astype(np.float32))
    return drawn[int(np.argmax(np.where(new, np.asarray(score), -np.inf)))]


def propose(controller, candidates: int, resolve, is_new, uniform, tries: int,
            from_policy: bool = True, scored=None):
    """The next trial (child, mask, values): up to `tries` times `best_new_draw` (none
    when not from_policy, e.g. during PolicyUpdate.startup), else the first new one of up
    to `tries` uniform draws (uniform() → a trial); None when all collide (the space
    counts as exhausted, keras-tuner's rule)."""
    for _ in range(tries if from_policy else 0):
        trial = best_new_draw(controller, candidates, resolve, is_new, scored)
        if trial is not None:
            return trial
    for _ in range(tries):
        trial = uniform()
        if is_new(trial[2]):
            return trial
    return None


def draw(rng, p) -> int:
    """Index drawn from probabilities p with a tf.random.Generator (the controller's RNG,
    checkpointed)."""
    import tensorflow as tf

    u = float(rng.uniform([], dtype=tf.float64).numpy())
    cdf = np.cumsum(np.asarray(p, np.float64))
    return int(min(np.searchsorted(cdf / cdf[-1], u, side="right"), len(cdf) - 1))


def _encode(a) -> dict:
    a = np.asarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape),
            "b64": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")}


def _decode(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["b64"]), dtype=d["dtype"]).reshape(d["shape"])


class PolicyOracle(WorkerFaults, kt.Oracle):
    """A keras-tuner Oracle driven by the tf_enas policy controller (learning per trial).

    Args (besides keras_tuner.Oracle's objective, max_trials, seed, hyperparameters,
    allow_new_entries, tune_new_entries, max_retries_per_trial,
    max_consecutive_failed_trials):
      controller_config: a tf_enas.controller.ControllerConfig (default:
        `default_controller_config(update.rule)`).
      grid_size: quantiles for an Int/Float without step.
      max_categories: the longest step grid used as is.
      update: a PolicyUpdate (default `default_update()`: TPE's rule with the policy
        network as its density; `PolicyUpdate()` for REINFORCE; see the module docstring).
      candidates: draws from the policy per trial (default `default_candidates(rule)`);
        the trial runs the new one with the highest proposal score (log l − log g for the
        density ratio, log π for REINFORCE; see `best_new_draw`); 1 runs a plain draw.
      trial_timeout_s: in a distributed search, seconds without a call from a worker after
        which its trial counts as lost (re-queued while max_retries_per_trial allows, else
        FAILED); it must exceed the longest trial (workers do not call the chief while a
        trial runs); default 3600. None: never (keras-tuner's behaviour: the chief waits
        forever for a dead worker).
    """

    def __init__(self, objective=None, max_trials=10, seed=None, hyperparameters=None,
                 allow_new_entries=True, tune_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, controller_config=None, grid_size=10,
                 max_categories=64, update=None, candidates=None,
                 trial_timeout_s=DEFAULT_TRIAL_TIMEOUT_S):
        super().__init__(objective=objective, max_trials=max_trials,
                         hyperparameters=hyperparameters, allow_new_entries=allow_new_entries,
                         tune_new_entries=tune_new_entries, seed=seed,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials,
                         trial_timeout_s=trial_timeout_s)
        if grid_size < 2 or max_categories < 2:
            raise ValueError(f"grid_size and max_categories must be >= 2, got {grid_size}, "
                             f"{max_categories}")
        self.update = (update or default_update()).validate()
        if candidates is None:
            candidates = default_candidates(self.update.rule)
        if not isinstance(candidates, int) or candidates < 1:
            raise ValueError(f"candidates must be an int >= 1, got {candidates!r}")
        self.candidates = candidates
        self._controller_config = controller_config
        self.grid_size, self.max_categories = int(grid_size), int(max_categories)
        self._controller = None  # built lazily (TensorFlow), see _ensure_controller
        self._layout = None      # [[key, values], ...] of the controller's decisions
        self._pending = None     # encoded controller state from set_state, not loaded yet
        self._actions = {}       # trial_id → {decision key: index} (active decisions)
        self._rewards = {}       # trial_id → {"reward": float | None, "failed": bool}
        self.rebuilds = 0        # controller rebuilds after the space grew
        self.last_update = {}    # logs of the last controller update
        self._encoded = None     # (version, encoded controller state) cache of get_state

    # --- the controller -------------------------------------------------------------------
    @property
    def controller_config(self):
        if self._controller_config is None:
            self._controller_config = default_controller_config(self.update.rule)
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
        if self._controller is not None:
            saved = self._export()
        elif self._pending is not None:
            saved = self._decode_state(self._pending)
        else:
            saved = None
        controller = self.update.controller(search_space_of(layout), self.controller_config,
                                            int(self.seed))
        if saved is not None:
            self._import(controller, layout, saved)
            if saved["layout"] != layout:
                self.rebuilds += 1
        self._controller, self._layout, self._pending = controller, layout, None
        return controller

    @staticmethod
    def _stable_names(controller, layout) -> dict:
        """The controller's variable names → names that survive a rebuild for a grown
        space: "w:<key>" and "emb:<key>" for each decision's head and embedding (the
        controller names them by position), the others unchanged."""
        names = {}
        policies = [("", controller)]
        if hasattr(controller, "contrast"):  # a DensityRatioController's g
            policies.append(("contrast/", controller.contrast))
        for prefix, policy in policies:
            for (key, _), w, e in zip(layout, policy.w_choice, policy.choice_emb):
                names[w.name.split(":")[0]] = prefix + "w:" + key
                names[e.name.split(":")[0]] = prefix + "emb:" + key
        return names

    @staticmethod
    def _rename(state: dict, names: dict) -> dict:
        """Controller.get_state() with its variable names, and the optimizer slots named
        after them ("<variable>_<suffix>", with Keras's "_" for the "/" of a scope such as
        the density ratio's "contrast/"), mapped through `names`."""
        keras_form = lambda n: n.replace("/", "_")

        def slot(name):
            owners = [n for n in names if name.startswith(keras_form(n) + "_")]
            n = max(owners, key=len, default=None)
            return name if n is None else keras_form(names[n]) + name[len(n):]

        return {"variables": {names.get(k, k): v for k, v in state["variables"].items()},
                "optimizer": {slot(k): v for k, v in state["optimizer"].items()},
                "rng": state["rng"]}

    def _export(self) -> dict:
        """The controller's state (Controller.get_state) under stable names, as arrays."""
        c = self._controller
        dtype = lambda v: np.dtype(getattr(v.dtype, "as_numpy_dtype", v.dtype))
        dtypes = {v.name.split(":")[0]: dtype(v) for v in c.variables}
        dtypes |= {v.name: dtype(v) for v in c.optimizer.variables}
        state = c.get_state()
        state = {"variables": {k: np.asarray(a, dtypes[k]) for k, a in state["variables"].items()},
                 "optimizer": {k: np.asarray(a, dtypes[k]) for k, a in state["optimizer"].items()},
                 "rng": np.asarray(state["rng"], np.int64)}
        return {"layout": self._layout,
                **self._rename(state, self._stable_names(c, self._layout))}

    def _import(self, controller, layout, saved):
        """Controller.set_state of an _export (strict unless the layout changed: then
        whatever matches by stable name and shape)."""
        names = {v: k for k, v in self._stable_names(controller, layout).items()}
        controller.set_state(self._rename(saved, names), strict=saved["layout"] == layout)

    @staticmethod
    def _encode_state(s: dict) -> dict:
        return {"layout": s["layout"],
                **{t: {k: _encode(a) for k, a in s[t].items()} for t in ("variables", "optimizer")},
                "rng": _encode(s["rng"])}

    @staticmethod
    def _decode_state(s: dict) -> dict:
        return {"layout": s["layout"],
                **{t: {k: _decode(a) for k, a in s[t].items()} for t in ("variables", "optimizer")},
                "rng": _decode(s["rng"])}

    # --- sampling ---------------------------------------------------------------------------
    def _draw(self, p) -> int:
        return draw(self._controller.rng, p)

    def populate_space(self, trial_id):
        """Samples the active values of one trial from the policy (plain Python values)."""
        mapping = self.mapping()
        if not len(mapping):
            if self.trials:  # nothing to tune: the defaults ran already
                return {"status": TrialStatus.STOPPED, "values": None}
            return {"status": TrialStatus.RUNNING, "values": mapping.resolve(None)[2]}
        controller = self._ensure_controller(mapping.layout)
        trial = propose(controller, self.candidates,
                        lambda row: self._resolve(mapping, controller, row),
                        lambda values: not self._duplicate(values),
                        lambda: mapping.resolve(lambda k, child: self._draw(
                            np.ones(len(mapping.decisions[k].values)))),
                        self._max_collisions, len(self._rewards) >= self.update.startup,
                        self._scored_trials(mapping.layout))
        if trial is None:  # exhausted, by keras-tuner's rule of repeated collisions
            return {"status": TrialStatus.STOPPED, "values": None}
        child, mask, values = trial
        self._actions[trial_id] = {d.key: int(child[k]) for k, d in enumerate(mapping.decisions)
                                   if mask[k]}
        self._rewards.pop(trial_id, None)
        return {"status": TrialStatus.RUNNING, "values": values}

    def _resolve(self, mapping, controller, proposal):
        """(child, mask, values) of the trial that a joint draw `proposal` from the policy
        asks for."""
        def choose(k, child):
            # The controller's joint sample holds while the walk agrees with it; once an
            # inactive decision differs from its canonical 0, later decisions are drawn one
            # at a time given the canonical prefix.
            if np.array_equal(child[:k], proposal[:k]):
                return int(proposal[k])
            return self._draw(controller.probabilities(k, child[None])[0])

        return mapping.resolve(choose)

    # --- learning ---------------------------------------------------------------------------
    def _has_objective(self, trial) -> bool:
        """Whether keras-tuner can score the trial (its objective metric has a value)."""
        name = self.objective.name  # "multi_objective" for a list of objectives
        return trial.metrics.exists(name) and trial.metrics.get_best_value(name) is not None

    @kt.synchronized
    def end_trial(self, trial):
        """Ends the trial (keras-tuner's logistics), then the controller's update
        (`update`) once it is final (not sent for a retry)."""
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
                self._learn_from(own)
                self.save()

    def reward(self, trial) -> float | None:
        """R = score ("max") or −score ("min"); None when the trial has no finite score."""
        score = trial.score if trial.status == TrialStatus.COMPLETED else None
        if score is None or not math.isfinite(float(score)):
            return None
        return float(score) if self.objective.direction == "max" else -float(score)

    def _learn_from(self, trial):
        """Records the ended trial's reward (a failed one: the worst so far) and runs
        `policy_step` (update.rule) on the scored trials."""
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
        children, masks, rewards = self._scored(layout, None if self.update.replay
                                                else [(actions, reward)])
        self.last_update = policy_step(controller, self.update, children, rewards, masks)

    def _scored_trials(self, layout):
        """(children, rewards) of every scored trial (for the proposal's candidates)."""
        children, _, rewards = self._scored(layout)
        return children, rewards

    def _scored(self, layout, scored=None):
        """(children [n, D], masks [n, D], rewards [n]) of `scored` ([(actions, reward)];
        default: every scored trial) in `layout`'s decision order."""
        if scored is None:
            scored = [(self._actions[t], r["reward"]) for t, r in self._rewards.items()
                      if r["reward"] is not None and t in self._actions]
        keys = [k for k, _ in layout]
        children = np.array([[a.get(k, 0) for k in keys] for a, _ in scored], np.int32)
        masks = np.array([[1.0 if k in a else 0.0 for k in keys] for a, _ in scored],
                         np.float32)
        return (children.reshape(-1, len(keys)), masks.reshape(-1, len(keys)),
                np.array([r for _, r in scored], np.float32))

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
            c = self._controller
            # keras-tuner saves the oracle several times per trial: encode only on change
            # (every change of the controller moves its update count or its RNG)
            version = (int(c.num_updates.numpy()), c.rng.state.numpy().tobytes(),
                       repr(self._layout))
            if self._encoded is None or self._encoded[0] != version:
                self._encoded = (version, self._encode_state(self._export()))
            controller = self._encoded[1]
        else:
            controller = self._pending
        state["policy"] = {"controller": controller, "actions": self._actions,
                           "rewards": self._rewards, "rebuilds": self.rebuilds}
        return state

    def set_state(self, state):
        super().set_state(state)
        policy = state.get("policy") or {}
        self._controller, self._layout, self._encoded = None, None, None
        self._pending = policy.get("controller")
        self._actions = {k: dict(v) for k, v in policy.get("actions", {}).items()}
        self._rewards = {k: dict(v) for k, v in policy.get("rewards", {}).items()}
        self.rebuilds = int(policy.get("rebuilds", 0))
