"""The score-function (REINFORCE) estimator: no response term of its own.

With K ≥ 1 lookahead steps its REINFORCE term over every decision already estimates the
whole ∇_φ J_K, the response through w_K included (unbiased, high variance); with K = 0 it
is ENAS's estimator, and no hyperparameter of training can change the reward.
"""
from __future__ import annotations

import functools

import tensorflow as tf


def leave_one_out_mean(x):
    """b_i = (Σ_j x_j − x_i)/(B − 1): a baseline for sample i that does not depend on it."""
    x = tf.convert_to_tensor(x)
    n = tf.cast(tf.shape(x)[0], x.dtype)
    return (tf.reduce_sum(x, 0, keepdims=True) - x) / tf.maximum(n - 1, 1)


def loss_and_accuracy(logits, labels):
    """(mean softmax cross-entropy, accuracy) of a batch."""
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                          labels), tf.float32))
    return loss, acc


class ScoreFunction:
    """Evaluates children by L_val(a, w_K(a, h)) and adds nothing to REINFORCE.

    Args:
      lookahead_steps: K, steps of each child's own optimizer before its validation loss.
      truncate: the first `truncate` lookahead steps are not differentiated through.
    """

    name = "none"
    adds_term = False  # True: the terms are an added expectation (scaled by response_every)
    # False: the search runs every controller step from Python (ControllerPhase): the
    # batch is scored by one traced lookahead shared by all steps and the estimator adds
    # `terms` from its own traced functions, since a traced function called inside
    # another is optimized again per caller
    traced_inline = True

    def __init__(self, lookahead_steps: int = 0, truncate: int = 0):
        self.lookahead_steps = lookahead_steps
        self.truncate = truncate

    def evaluate(self, objective, state, children, values, val_batch, train_batch):
        """(losses [B], accuracies [B], ResponseTerms or None, logs dict) of a batch."""
        losses, accs = batch_losses(self.lookahead_steps, self.truncate)(
            objective, state, children, values, val_batch, train_batch)
        terms, logs = self.terms(objective, children, values, val_batch, train_batch)
        return losses, accs, terms, logs

    def terms(self, objective, children, values, val_batch, train_batch):
        """(ResponseTerms or None, logs dict): what the estimator adds to REINFORCE on a
        batch that the score function's lookahead scores (here nothing)."""
        return None, {}


@functools.cache
def batch_losses(lookahead_steps: int, truncate: int):
    """(L_val(a, w_K(a, h)) [B], accuracies [B]) of a batch of children, as one traced
    function per (K, truncate): the score-only controller step and an IFT step (which needs
    the same rewards) share its trace."""

    def child_loss(objective, state, child, values, val_batch, train_batch):
        params, velocity = state
        params = objective.lookahead(params, velocity, child, values, *train_batch,
                                     lookahead_steps, truncate)
        return loss_and_accuracy(objective.logits(params, child, val_batch[0]), val_batch[1])

    def losses(objective, state, children, values, val_batch, train_batch):
        return tf.map_fn(
            lambda a: child_loss(objective, state, a[0], a[1], val_batch, train_batch),
            (children, values), fn_output_signature=(tf.float32, tf.float32))
    return tf.function(losses, autograph=False)
