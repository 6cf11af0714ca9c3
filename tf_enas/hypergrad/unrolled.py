"""Reverse-mode hypergradient through K differentiable optimizer steps (Maclaurin et al. 2015).

d/d(lambda) val_loss(w_K(lambda), lambda), w_{t+1} = step(w_t, grad train_loss(w_t, lambda, t), lambda).

The steps run as a tf.while_loop under one GradientTape: TensorFlow's while_v2 gradient
keeps each step's intermediates in TensorLists, so memory grows linearly in K (see
``forward_hypergradient`` for memory independent of K) while the graph, the trace time and
the compiled function stay the same size for every K; ``steps`` may be a tensor, so a
``tf.function`` does not retrace when it changes. Side by side with an unrolled Python
loop (``tf_enas.benchmarks.hypergrad_cost``), the while_loop ran at the same speed and
traced in constant instead of O(K) time.
"""
import tensorflow as tf

from tf_enas.hypergrad import _lists
from tf_enas.hypergrad import inner_loop

_ZERO = tf.UnconnectedGradients.ZERO


def unrolled_hypergradient(train_loss, val_loss, params, hparams, steps, optimizer="sgd",
                           learning_rate=0.1, momentum=0.9, truncate=None, beta2=0.999,
                           epsilon=1e-8, eps_root=1e-16):
    """(d val_loss(w_K, lambda) / d lambda, w_K) by reverse mode through `steps` optimizer steps.

    train_loss(params, hparams, step) -> scalar (step: int32 tensor, e.g. to pick a
    minibatch); val_loss(params, hparams) -> scalar. optimizer: "sgd", "momentum" (heavy
    ball, ``momentum`` = mu) or "adam" (``momentum`` = beta1). learning_rate, momentum,
    beta2, epsilon: floats or callables of hparams (e.g. ``lambda h: tf.exp(h[0])`` to tune
    the log learning rate). truncate=T: only the last T steps are differentiated; w and the
    optimizer state after the first K-T steps are treated as constants (stop_gradient), so
    the result is d val_loss / d lambda through steps K-T..K-1 only (T >= K: exact).
    Hyperparameters unused by both losses and the optimizer get zero gradients.
    Returns (grads shaped like hparams, final params w_K).
    """
    params, hparams, steps, optimizer, start = inner_loop.prepare(
        params, hparams, steps, optimizer, truncate)
    dtype = params[0].dtype

    def hyper_of(hp):
        return inner_loop.hyperparameters(hp, dtype, learning_rate, momentum, beta2, epsilon,
                                          eps_root)

    frozen = [tf.stop_gradient(h) for h in hparams]
    state = optimizer.init(params)
    params, state = inner_loop.run(train_loss, optimizer, params, state, frozen,
                                   hyper_of(frozen), 0, start)
    params = [tf.stop_gradient(w) for w in params]
    state = [tf.stop_gradient(s) for s in state]
    with tf.GradientTape() as tape:
        tape.watch(hparams)
        final, _ = inner_loop.run(train_loss, optimizer, params, state, hparams,
                                  hyper_of(hparams), start, steps)
        loss = val_loss(final, hparams)
    grads = tape.gradient(loss, hparams, unconnected_gradients=_ZERO)
    return _lists.zeros_for_none(grads, hparams), [tf.stop_gradient(w) for w in final]
