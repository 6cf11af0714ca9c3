"""One controller step: sample a batch of children, evaluate them with a response estimator
(the configured one on every `response_every`-th step, the score function on the others),
reward them and update the policy.

Rewards: R = accuracy (ENAS; 0 if non-finite) or R = −min(L_val(a, w_K), cap) (−cap if
non-finite). A response term is weighted by n = `response_every` on the steps that compute
it, so that its expectation per step is unchanged. A pathwise estimator (unrolled) replaces
the continuous decisions' REINFORCE term, on its own steps and, through
CategoricalScoreFunction, on the steps between: the continuous decisions learn from n× its
term on every n-th step and from nothing else.
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
        between = (response_lib.CategoricalScoreFunction if self.response.pathwise else
                   response_lib.ScoreFunction)
        self.score_only = (self.response if config.response == "none" else
                           between(config.lookahead_steps, config.truncate))
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
        run = self._step if self.response.traced_inline else self._python_step
        return run(x, y, estimator) | {
            "response/computed": float(is_response and estimator is not self.score_only)}

    def _sample_batch(self):
        """(children, values, lookahead batch): the policy's batch of children and a random
        training batch for their lookahead."""
        cfg = self.config
        children, values = self.sample_children(cfg.controller_batch)
        idx = self.batch_rng.uniform([cfg.lookahead_batch_size], 0,
                                     tf.shape(self.x_train)[0], dtype=tf.int32)
        return children, values, (tf.gather(self.x_train, idx), tf.gather(self.y_train, idx))

    def _sample_and_evaluate(self, x, y, estimator):
        """(children, values, lookahead batch, losses, accuracies, terms, logs) of a sampled
        batch evaluated by `estimator`."""
        children, values, train_batch = self._sample_batch()
        losses, accs, terms, logs = estimator.evaluate(
            self.shared.objective, self.shared.state(), children, values, (x, y), train_batch)
        return children, values, train_batch, losses, accs, terms, logs

    def _evaluate(self, x, y, estimator):
        """Samples a batch of children and evaluates it: (children, values, losses,
        accuracies, rewards, terms, weight of the terms, logs)."""
        children, values, _, losses, accs, terms, logs = self._sample_and_evaluate(
            x, y, estimator)
        return (children, values, losses, accs, self.rewards(losses, accs), terms,
                self._weight(), dict(logs))

    def _weight(self):
        """The response term's weight: response_weight·n on the steps that compute it (the
        steps between add no term, or CategoricalScoreFunction's zero one)."""
        return self.config.response_weight * self.config.response_every

    @tf.function(autograph=False)
    def gradient_estimate(self, x, y, estimator):
        """One estimate of ∇_φ J with `estimator` (weight 1), changing nothing but the
        random streams: the controller's gradients as a list."""
        children, values, _, _, rewards, terms, _, _ = self._evaluate(x, y, estimator)
        return self.controller.gradients(children, values, rewards, response=terms)[0]

    def _run_step(self, x, y, estimator):
        """Sample, evaluate, update (traced whole as `_step`)."""
        return self._update(*self._evaluate(x, y, estimator))

    _step = tf.function(_run_step, autograph=False)

    @tf.function(autograph=False)
    def _score_batch(self, x, y):
        """(children, values, lookahead batch, losses, accuracies[, training gradients]) of
        a sampled batch scored by the score function's lookahead: one traced function for
        every step of a search whose response runs from Python (its score-only steps and
        its response steps), with the children's ∇_w L_train if the response needs them."""
        children, values, train_batch = self._sample_batch()
        scored = self.score_only.scores(self.shared.objective, self.shared.state(), children,
                                        values, (x, y), train_batch,
                                        self.response.needs_train_gradients)
        return (children, values, train_batch, *scored)

    def _python_step(self, x, y, estimator):
        """Sample, evaluate, update from Python, for a response that is not `traced_inline`:
        every step scores its batch with `_score_batch`; a response step adds the
        estimator's terms (its own traced functions)."""
        children, values, train_batch, losses, accs, *gradients = self._score_batch(x, y)
        terms, logs = estimator.terms(self.shared.objective, children, values, (x, y),
                                      train_batch, *gradients)
        return self._update(children, values, losses, accs, self.rewards(losses, accs), terms,
                            self._weight(), dict(logs))

    def _update(self, children, values, losses, accs, rewards, terms, weight, logs):
        """Updates the policy; returns the step's logs."""
        cfg = self.config
        logs = logs | self.update_policy(children, values, rewards, terms, weight)
        for i, name in enumerate(self.continuous):
            logs[f"controller/{name}"] = tf.reduce_mean(values[:, i])
        return logs | {"controller/best_reward": tf.reduce_max(rewards),
                       "controller/val_accuracy": tf.reduce_mean(accs),
                       "controller/best_val_accuracy": tf.reduce_max(accs),
                       "controller/val_loss": tf.reduce_mean(tf.where(
                           tf.math.is_finite(losses), losses, cfg.reward_loss_cap))}
