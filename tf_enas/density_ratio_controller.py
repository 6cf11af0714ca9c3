"""DensityRatioController: TPE's proposal rule with the controller's LSTM as the density.

Trial-level search (PolicyOracle, the tabular benchmark) learns from a few hundred scored
trials, where REINFORCE is slow. This controller keeps the policy network but fits it
the way the tree-structured Parzen estimator (TPE; Bergstra et al. 2011) fits its
densities. After n scored trials the best γ(n) = min(⌈n/10⌉, 25) are "good" (TPE's split;
equal rewards: the earlier trial first) and the rest "bad"; the policy l = π_φ is fitted
to the good trials and a second policy g (same architecture, its own variables, in
`contrast`) to the bad ones, by maximum likelihood with an entropy bonus:

    loss = −mean_good log l(x) − mean_bad log g(x) − β_ent·(mean H[l] + mean H[g])

(one Adam step per `update`, both networks at once). A proposal maximizes TPE's
criterion log l(x) − log g(x) (`proposal_score`) over draws from l (PolicyOracle's
`candidates`). No REINFORCE term is used: the rewards only decide which trials are good.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tf_enas.controller import Controller
from tf_enas.policy import Policy

MAX_GOOD = 25  # TPE's cap on the good set


def good_trials(rewards) -> np.ndarray:
    """0/1 [n]: the best min(⌈n/10⌉, 25) rewards (higher is better; ties: earlier first)."""
    r = np.asarray(rewards, np.float64)
    good = np.zeros(r.size, np.float32)
    good[np.argsort(-r, kind="stable")[:min(math.ceil(r.size / 10), MAX_GOOD)]] = 1.0
    return good


class DensityRatioController(Controller):
    """A Controller whose `update` fits l (itself) to the good trials and g (`contrast`)
    to the rest, and whose `proposal_score` is log l − log g (module docstring)."""

    def _build_heads(self, lstm_size, seed):
        # built with the heads, so that Controller's one Adam covers both networks
        with tf.name_scope("contrast"):
            self.contrast = Policy(self.space, self.config, seed=seed + 1, name="contrast")

    @tf.function(autograph=False, reduce_retracing=True)
    def proposal_score(self, children, mask=None):
        """log l(x) − log g(x) over the active decisions (mask [B, D], optional) → [B]."""
        return self.log_prob(children, mask=mask) - self.contrast.log_prob(children, mask=mask)

    def update(self, children, values, rewards, mask=None, response=None,
               response_weight=1.0):
        """One Adam step of the two fits on every scored trial: children [n, D], rewards
        [n] (higher is better), mask [n, D] of the decisions that count; returns logs."""
        if response is not None or (values is not None and np.size(values)):
            raise ValueError("DensityRatioController fits categorical trials only: no "
                             "continuous values, no response terms")
        children = tf.convert_to_tensor(children, tf.int32)
        if mask is None:
            mask = tf.ones(tf.shape(children), tf.float32)
        return self._fit(children, tf.constant(good_trials(rewards)),
                         tf.cast(mask, tf.float32))

    @tf.function(autograph=False, reduce_retracing=True)
    def _fit(self, children, good, mask):
        bad = 1.0 - good
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            losses = []
            for policy, weight in ((self, good), (self.contrast, bad)):
                walk = policy.walk(tf.shape(children)[0], children,
                                   tf.zeros((tf.shape(children)[0], 0)))
                log_prob = tf.reduce_sum(walk.discrete_log_prob * mask, 1)
                entropy = tf.reduce_sum(walk.discrete_entropy * mask, 1)
                total = tf.maximum(tf.reduce_sum(weight), 1.0)
                losses.append(-tf.reduce_sum(weight * log_prob) / total
                              - self.config.entropy_weight
                              * tf.reduce_sum(weight * entropy) / total)
            loss = losses[0] + losses[1]
        logs = self.apply_gradients(tape.gradient(loss, variables))
        return logs | {"controller/loss": loss, "density_ratio/good_nll": losses[0],
                       "density_ratio/bad_nll": losses[1],
                       "density_ratio/good": tf.reduce_sum(good)}
