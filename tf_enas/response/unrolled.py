"""The pathwise (unrolled) estimator: ∂L_val(a, w_K(a, h))/∂h through the K steps.

For reparameterized continuous h it replaces their score-function term with
(1/B) Σ_i ∂L_val(a_i, w_K)/∂h_i · ∂h_i/∂φ — the same gradient of J_K, lower variance;
the categorical decisions keep REINFORCE.
"""
from __future__ import annotations

import tensorflow as tf

from tf_enas import hypergrad
from tf_enas.controller import ResponseTerms
from tf_enas.response.score_function import ScoreFunction, loss_and_accuracy


class Unrolled(ScoreFunction):
    """Args: lookahead_steps (K ≥ 1), truncate (the first steps not differentiated
    through), memory: hypergrad.unrolled_hypergradient's "full" (every step kept) or
    "checkpointed" (√K checkpoints and recomputation: long horizons in bounded memory)."""

    name = "unrolled"
    pathwise = True

    def __init__(self, lookahead_steps: int = 1, truncate: int = 0, memory: str = "full"):
        if lookahead_steps < 1:
            raise ValueError(f"the unrolled response needs lookahead_steps >= 1, got "
                             f"{lookahead_steps} (at K = 0 no hyperparameter of training "
                             f"changes L_val)")
        if memory not in hypergrad.unrolled.MEMORY:
            raise ValueError(f"memory must be one of {hypergrad.unrolled.MEMORY}, got "
                             f"{memory!r}")
        super().__init__(lookahead_steps, truncate)
        self.memory = memory

    def child_response(self, objective, state, child, values, val_batch, train_batch):
        """(L_val(a, w_K), accuracy, ∂L_val(a, w_K)/∂h) of one child: reverse mode through
        its K heavy-ball steps from the shared weights and velocity."""
        params, velocity = state
        hp = lambda h: objective.hyperparameters(child, h[0])

        def val_loss(p, h):
            loss, acc = loss_and_accuracy(objective.logits(p, child, val_batch[0]),
                                          val_batch[1])
            return loss, (loss, acc)

        dloss, _, (loss, acc) = hypergrad.unrolled_hypergradient(
            lambda p, h, t: objective.train_loss(p, child, h[0], *train_batch), val_loss,
            params, [values], self.lookahead_steps, optimizer="momentum",
            learning_rate=lambda h: hp(h).learning_rate * objective.lr_scale(),
            momentum=lambda h: hp(h).momentum, truncate=self.lookahead_steps - self.truncate,
            init_state=velocity, memory=self.memory, has_aux=True)
        return loss, acc, dloss[0]

    def evaluate(self, objective, state, children, values, val_batch, train_batch):
        losses, accs, dloss = tf.map_fn(
            lambda a: self.child_response(objective, state, a[0], a[1], val_batch,
                                          train_batch),
            (children, values), fn_output_signature=(
                tf.float32, tf.float32, tf.TensorSpec(values.shape[1:], tf.float32)))
        finite = tf.math.is_finite(losses) & tf.reduce_all(tf.math.is_finite(dloss), 1)
        dloss = tf.where(finite[:, None], dloss, 0.0)
        terms = ResponseTerms(tf.zeros_like(losses), dloss, score_continuous=False)
        return losses, accs, terms, {"response/dloss_dvalues_mean": tf.reduce_mean(dloss, 0)}
