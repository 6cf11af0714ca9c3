"""One controller step: sample a batch of children, evaluate them with a response estimator
(the configured one on every `response_every`-th step, the score function on the others),
reward them and update the policy.

Rewards: R = accuracy (ENAS; 0 if non-finite) or R = −min(L_val(a, w_K), cap) (−cap if
non-finite). An estimator whose terms are an added expectation (`adds_term`, IFT) is
weighted by `response_every` on the steps that compute it, so its expectation per step is
unchanged; a pathwise replacement (unrolled) needs no weight.
"""
from __future__ import annotations

import tensorflow as tf

from tf_enas import response as response_lib


class ControllerPhase:
    """Args: config (SearchConfig); controller; shared (SharedWeights); x_train, y_train
    (tensors the lookahead batches are drawn from); sample_children(n) and
    update_policy(children, values, rewards, terms, weight): the search's override points."""

    def __init__(self, config, controller, shared, x_train, y_train, sample_children,
                 update_policy):
        self.config = config
        self.controller = controller
        self.shared = shared
        self.x_train, self.y_train = x_train, y_train
        self.sample_children, self.update_policy = sample_children, update_policy
        self.response = config.estimator()
        self.score_only = (self.response if config.response == "none" else
                           response_lib.ScoreFunction(config.lookahead_steps, config.truncate))
        self.continuous = [d.name for d in config.decisions()]
        self.batch_rng = tf.random.Generator.from_seed(config.seed + 7919)

    def rewards(self, losses, accuracies):
        if self.config.reward == "accuracy":
            return tf.where(tf.math.is_finite(losses), accuracies, 0.0)
        cap = self.config.reward_loss_cap
        return tf.where(tf.math.is_finite(losses), -tf.minimum(losses, cap), -cap)

    def step(self, x, y) -> dict:
        """One controller step on the validation batch (x, y); returns its logs."""
        is_response = int(self.controller.num_updates.numpy()) % self.config.response_every == 0
        estimator = self.response if is_response else self.score_only
        run = self._step if estimator.traced_inline else self._run_step
        return run(x, y, estimator) | {
            "response/computed": float(is_response and estimator is not self.score_only)}

    def _evaluate(self, x, y, estimator):
        """Samples a batch of children and evaluates it: (children, values, losses,
        accuracies, rewards, terms, weight of the terms, logs)."""
        cfg = self.config
        children, values = self.sample_children(cfg.controller_batch)
        idx = self.batch_rng.uniform([cfg.lookahead_batch_size], 0,
                                     tf.shape(self.x_train)[0], dtype=tf.int32)
        train_batch = (tf.gather(self.x_train, idx), tf.gather(self.y_train, idx))
        losses, accs, terms, logs = estimator.evaluate(
            self.shared.objective, self.shared.state(), children, values, (x, y), train_batch)
        weight = cfg.response_weight * (cfg.response_every if estimator.adds_term else 1)
        return (children, values, losses, accs, self.rewards(losses, accs), terms, weight,
                dict(logs))

    @tf.function(autograph=False)
    def gradient_estimate(self, x, y, estimator):
        """One estimate of ∇_φ J with `estimator` (weight 1), changing nothing but the
        random streams: the controller's gradients as a list."""
        children, values, _, _, rewards, terms, _, _ = self._evaluate(x, y, estimator)
        return self.controller.gradients(children, values, rewards, response=terms)[0]

    def _run_step(self, x, y, estimator):
        """Sample, evaluate, update: one traced graph (`_step`) or, for an estimator that is
        not `traced_inline`, Python calling its own traced functions."""
        cfg = self.config
        children, values, losses, accs, rewards, terms, weight, logs = self._evaluate(
            x, y, estimator)
        logs = logs | self.update_policy(children, values, rewards, terms, weight)
        for i, name in enumerate(self.continuous):
            logs[f"controller/{name}"] = tf.reduce_mean(values[:, i])
        return logs | {"controller/best_reward": tf.reduce_max(rewards),
                       "controller/val_accuracy": tf.reduce_mean(accs),
                       "controller/best_val_accuracy": tf.reduce_max(accs),
                       "controller/val_loss": tf.reduce_mean(tf.where(
                           tf.math.is_finite(losses), losses, cfg.reward_loss_cap))}

    _step = tf.function(_run_step, autograph=False)
