"""DensityRatioController: TPE's proposal rule with the controller's LSTM as the density.

Trial-level search (PolicyOracle, the tabular benchmark) learns from a few hundred scored
trials, where REINFORCE is slow. This controller keeps the policy network but fits it
the way the tree-structured Parzen estimator (TPE; Bergstra et al. 2011) fits its
densities. After n scored trials the best γ(n) = min(⌈n/10⌉, 25) are "good" (TPE's split;
equal rewards: the earlier trial first) and the rest "bad"; the policy l = π_φ is fitted
to the good trials and a second policy g (same architecture, its own variables, in
`contrast`) to the bad ones, by maximum likelihood with an entropy bonus:

    loss = −mean_good [log l(x) + β_ent·H_l(x)] − mean_bad [log g(x) + β_ent·H_g(x)]

with H(x) the entropies of the decisions along x's walk (one Adam step per `update`,
both networks at once; inactive decisions masked; with `fit_batch`, each step's means
run over a fresh uniform subset of at most fit_batch trials of each set, an unbiased
estimate of the full loss whose cost does not grow with the number of trials). A
proposal maximizes TPE's criterion log l(x) − log g(x) (`proposal_score`) over draws
from l (PolicyOracle's `candidates`) and as many local moves of good trials
(`candidate_rows`: a good trial with each decision moved with probability MOVE_PROB, the
kind of proposal TPE's multivariate kernels make: a numeric grid one value up or down, as
TPE's kernels stay near the good values; a categorical decision redrawn uniformly). No
REINFORCE term is used: the rewards only decide which trials are good.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tf_enas.controller import Controller
from tf_enas.policy import Policy

MAX_GOOD = 25  # TPE's cap on the good set
MOVE_PROB = 0.2  # per decision, in a local move of a good trial


def good_trials(rewards) -> np.ndarray:
    """0/1 [n]: the best min(⌈n/10⌉, 25) rewards (higher is better; ties: earlier first)."""
    r = np.asarray(rewards, np.float64)
    good = np.zeros(r.size, np.float32)
    good[np.argsort(-r, kind="stable")[:min(math.ceil(r.size / 10), MAX_GOOD)]] = 1.0
    return good


def ordinal(values) -> bool:
    """Whether a decision's values are ≥ 3 numbers (not booleans) in strictly increasing
    or decreasing order."""
    if len(values) < 3 or not all(isinstance(v, (int, float, np.number))
                                  and not isinstance(v, (bool, np.bool_)) for v in values):
        return False
    steps = np.diff(np.asarray(values, np.float64))
    return bool(np.all(steps > 0) or np.all(steps < 0))


def _neighbor(index, u, sizes):
    """One grid step from `index`, down if u < ½ else up; at an end of the grid, the
    other way."""
    step = np.where(u < 0.5, -1, 1)
    moved = index + step
    return np.where((moved < 0) | (moved >= sizes), index - step, moved).astype(np.int32)


class DensityRatioController(Controller):
    """A Controller whose `update` fits l (itself) to the good trials and g (`contrast`)
    to the rest, and whose `proposal_score` is log l − log g (module docstring).

    fit_batch: trials of each set per fitting step (a fresh random subset from the
      controller's RNG; None: all of them); read when the fit is traced, so set it at
      construction."""

    def __init__(self, space, config=None, seed: int = 0, name: str = "controller",
                 fit_batch: int | None = None):
        super().__init__(space, config, seed=seed, name=name)
        self.fit_batch = fit_batch
        # bool [D]: the numeric grids, which a local move steps along instead of redrawing
        self._ordinal = np.array([ordinal(d.values) for d in self.space.decisions])

    def _build_heads(self, lstm_size, seed):
        # built with the heads, so that Controller's one Adam covers both networks
        with tf.name_scope("contrast"):
            self.contrast = Policy(self.space, self.config, seed=seed + 1, name="contrast")

    def candidate_rows(self, n: int, scored=None) -> np.ndarray:
        """n draws from l, then (once a trial is scored) n local moves of good trials:
        int32 [n or 2n, D]. scored: (children [m, D], rewards [m]). Random numbers come
        from the controller's RNG (checkpointed)."""
        draws = super().candidate_rows(n)
        if scored is None or not len(scored[1]):
            return draws
        good = np.asarray(scored[0], np.int32)[good_trials(scored[1]) > 0]
        sizes = np.array([d.num_values for d in self.space.decisions])
        u = self.rng.uniform((3, n, len(sizes)), dtype=tf.float64).numpy()
        base = good[(u[0, :, 0] * len(good)).astype(int)]
        redrawn = np.where(self._ordinal, _neighbor(base, u[2], sizes),
                           (u[2] * sizes).astype(np.int32))
        return np.concatenate([draws, np.where(u[1] < MOVE_PROB, redrawn, base)]).astype(
            np.int32)

    @tf.function(autograph=False, reduce_retracing=True)
    def proposal_score(self, children, mask=None):
        """log l(x) − log g(x) over the active decisions (mask [B, D], optional) → [B]."""
        return self.log_prob(children, mask=mask) - self.contrast.log_prob(children, mask=mask)

    def update(self, children, values, rewards, mask=None, response=None,
               response_weight=1.0):
        """One Adam step of the two fits on every scored trial (update_steps)."""
        if response is not None or (values is not None and np.size(values)):
            raise ValueError("DensityRatioController fits categorical trials only: no "
                             "continuous values, no response terms")
        return self.update_steps(children, rewards, mask)

    def update_steps(self, children, rewards, mask=None, steps: int = 1) -> dict:
        """`steps` Adam steps of the two fits, in one traced call, on every scored trial:
        children [n, D], rewards [n] (higher is better), mask [n, D] of the decisions that
        count; returns the last step's logs."""
        children = np.asarray(children, np.int32)
        mask = (np.ones(children.shape, np.float32) if mask is None
                else np.asarray(mask, np.float32))
        good = good_trials(rewards) > 0
        return self._fit(children[good], mask[good], children[~good], mask[~good],
                         tf.constant(steps, tf.int32))

    _TRIALS = tf.TensorSpec([None, None], tf.int32)
    _MASK = tf.TensorSpec([None, None], tf.float32)

    @tf.function(autograph=False, input_signature=[_TRIALS, _MASK, _TRIALS, _MASK,
                                                   tf.TensorSpec([], tf.int32)])
    def _fit(self, good, good_mask, bad, bad_mask, steps):
        """`steps` Adam steps as one tf.while_loop, traced once for every number of trials
        and steps."""
        def step(i, *_):
            with tf.GradientTape() as tape:
                good_nll = self._fit_loss(self, good, good_mask)
                bad_nll = self._fit_loss(self.contrast, bad, bad_mask)
                loss = good_nll + bad_nll
            norm = self.apply_gradients(tape.gradient(loss, self.trainable_variables))
            return i + 1, loss, good_nll, bad_nll, norm["controller/grad_norm"]

        zero = tf.constant(0.0)
        _, loss, good_nll, bad_nll, norm = tf.while_loop(
            lambda i, *_: i < steps, step, (tf.constant(0), zero, zero, zero, zero))
        return {"controller/grad_norm": norm, "controller/loss": loss,
                "density_ratio/good_nll": good_nll, "density_ratio/bad_nll": bad_nll,
                "density_ratio/good": tf.shape(good)[0]}

    def _fit_loss(self, policy, children, mask):
        """−mean log p(x) − β_ent·mean H over `children` (0 for none; with fit_batch, over
        a uniform random subset of at most fit_batch of them, padded to fit_batch rows of
        mask 0: a static batch shape lets grappler drop the broadcast-gradient ops of a
        dynamic one: 10–15% of a search's overhead, BENCHMARKS.md)."""
        n = tf.shape(children)[0]
        rows = n
        if self.fit_batch:
            rows, n = self.fit_batch, tf.minimum(n, self.fit_batch)
            subset = tf.math.top_k(self.rng.uniform(tf.shape(children)[:1]), n).indices
            pad = [[0, rows - n], [0, 0]]
            shape = [rows, len(self.space)]
            children = tf.ensure_shape(tf.pad(tf.gather(children, subset), pad), shape)
            mask = tf.ensure_shape(tf.pad(tf.gather(mask, subset), pad), shape)
        walk = policy.walk(rows, children, tf.zeros((rows, 0)))
        log_prob = tf.reduce_sum(walk.discrete_log_prob * mask, 1)
        entropy = tf.reduce_sum(walk.discrete_entropy * mask, 1)
        count = tf.maximum(tf.cast(n, tf.float32), 1.0)
        return -(tf.reduce_sum(log_prob) + self.config.entropy_weight
                 * tf.reduce_sum(entropy)) / count
