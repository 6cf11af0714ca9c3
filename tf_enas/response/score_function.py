"""The score-function (REINFORCE) estimator: no response term of its own.

With K ≥ 1 lookahead steps its REINFORCE term over every decision already estimates the
whole ∇_φ J_K, the response through w_K included (unbiased, high variance); with K = 0 it
is ENAS's estimator, and no hyperparameter of training can change the reward.
"""
from __future__ import annotations

import functools

import tensorflow as tf

from tf_enas import hypergrad
from tf_enas.controller import ResponseTerms


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
    pathwise = False  # True: its term replaces the continuous decisions' REINFORCE term,
    # and a search computing it on every n-th step keeps them out of REINFORCE on the
    # steps between (CategoricalScoreFunction)
    traced_inline = True  # False: the search runs every controller step from Python
    # (ControllerPhase): the batch is scored by one traced lookahead shared by all steps
    # and the estimator adds `terms` from its own traced functions, since a traced
    # function called inside another is optimized again per caller
    needs_train_gradients = False  # True: `terms` takes each child's ∇_w L_train at w on
    # the lookahead batch, which the rewards' lookahead computes anyway (batch_losses)

    def __init__(self, lookahead_steps: int = 0, truncate: int = 0):
        self.lookahead_steps = lookahead_steps
        self.truncate = truncate

    def evaluate(self, objective, state, children, values, val_batch, train_batch):
        """(losses [B], accuracies [B], ResponseTerms or None, logs dict) of a batch."""
        losses, accs, *gradients = self.scores(objective, state, children, values, val_batch,
                                               train_batch, self.needs_train_gradients)
        terms, logs = self.terms(objective, children, values, val_batch, train_batch,
                                 *gradients)
        return losses, accs, terms, logs

    def scores(self, objective, state, children, values, val_batch, train_batch,
               train_gradients=False):
        """(losses [B], accuracies [B][, training gradients [B, P]]) of a batch after this
        estimator's lookahead (batch_losses: one trace per K, truncate, train_gradients)."""
        return batch_losses(self.lookahead_steps, self.truncate, train_gradients)(
            objective, state, children, values, val_batch, train_batch)

    def terms(self, objective, children, values, val_batch, train_batch,
              train_gradients=None):
        """(ResponseTerms or None, logs dict): what the estimator adds to REINFORCE on a
        batch that the score function's lookahead scores (here nothing). train_gradients:
        batch_losses's, given to an estimator that `needs_train_gradients`."""
        return None, {}


class CategoricalScoreFunction(ScoreFunction):
    """REINFORCE on the categorical decisions only: the steps between a pathwise
    estimator's response steps, so that the continuous decisions learn from the pathwise
    term alone (weighted by response_every where it is computed) instead of from a
    REINFORCE term whose noise is about 1,000× its signal (BENCHMARKS.md,
    "controller-gradient variance")."""

    name = "categorical score function"

    def terms(self, objective, children, values, val_batch, train_batch,
              train_gradients=None):
        zeros = tf.zeros(tf.shape(values)[:1])
        return ResponseTerms(zeros, tf.zeros_like(values), score_continuous=False), {}


@functools.cache
def batch_losses(lookahead_steps: int, truncate: int, train_gradients: bool = False):
    """(L_val(a, w_K(a, h)) [B], accuracies [B]) of a batch of children, as one traced
    function per (K, truncate, train_gradients): the score-only controller step and an IFT
    step (which needs the same rewards) share its trace. train_gradients: also return
    [B, P], each child's ∇_w L_train(a, h, w) on the lookahead batch at the shared weights
    (flattened in order, hypergrad.flatten): the lookahead's first step, for an estimator
    that `needs_train_gradients`."""

    def child_loss(objective, state, child, values, val_batch, train_batch):
        params, velocity = state
        gradient = None
        if train_gradients:
            _, gradient = hypergrad.gradient(
                lambda p: objective.train_loss(p, child, values, *train_batch), params)
        params = objective.lookahead(params, velocity, child, values, *train_batch,
                                     lookahead_steps, truncate, first_gradient=gradient)
        scores = loss_and_accuracy(objective.logits(params, child, val_batch[0]),
                                   val_batch[1])
        return (*scores, hypergrad.flatten(gradient)) if train_gradients else scores

    def losses(objective, state, children, values, val_batch, train_batch):
        like = [tf.TensorSpec([], tf.float32)] * 2  # a loss and an accuracy per child
        if train_gradients:
            like.append(tf.TensorSpec([hypergrad.num_elements(state[0])], tf.float32))
        return tf.map_fn(
            lambda a: child_loss(objective, state, a[0], a[1], val_batch, train_batch),
            (children, values), fn_output_signature=tuple(like))
    return tf.function(losses, autograph=False)
