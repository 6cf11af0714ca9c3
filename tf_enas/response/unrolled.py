"""The pathwise (unrolled) estimator: ∂L_val(a, w_K(a, h))/∂h through the K steps.

For reparameterized continuous h it replaces their score-function term with
(1/B) Σ_i ∂L_val(a_i, w_K)/∂h_i · ∂h_i/∂φ — the same gradient of J_K, lower variance;
the categorical decisions keep REINFORCE.
"""
from __future__ import annotations

import tensorflow as tf

from tf_enas.controller import ResponseTerms
from tf_enas.response.score_function import ScoreFunction


class Unrolled(ScoreFunction):
    name = "unrolled"

    def __init__(self, lookahead_steps: int = 1, truncate: int = 0):
        if lookahead_steps < 1:
            raise ValueError(f"the unrolled response needs lookahead_steps >= 1, got "
                             f"{lookahead_steps} (at K = 0 no hyperparameter of training "
                             f"changes L_val)")
        super().__init__(lookahead_steps, truncate)

    def evaluate(self, objective, state, children, values, val_batch, train_batch):
        def one(args):
            child, vals = args
            with tf.GradientTape() as tape:
                tape.watch(vals)
                loss, acc = self.child_loss(objective, state, child, vals, val_batch,
                                            train_batch)
            return loss, acc, tape.gradient(loss, vals,
                                            unconnected_gradients=tf.UnconnectedGradients.ZERO)

        losses, accs, dloss = tf.map_fn(one, (children, values), fn_output_signature=(
            tf.float32, tf.float32, tf.TensorSpec(values.shape[1:], tf.float32)))
        finite = tf.math.is_finite(losses) & tf.reduce_all(tf.math.is_finite(dloss), 1)
        dloss = tf.where(finite[:, None], dloss, 0.0)
        terms = ResponseTerms(tf.zeros_like(losses), dloss, score_continuous=False)
        return losses, accs, terms, {"response/dloss_dvalues_mean": tf.reduce_mean(dloss, 0)}
