"""Reverse-mode hypergradient through K differentiable optimizer steps (Maclaurin et al. 2015).

d/d(lambda) val_loss(w_K(lambda), lambda), w_{t+1} = step(w_t, grad train_loss(w_t, lambda, t), lambda).

The differentiated steps run under one GradientTape, either as an unrolled Python loop or
as a tf.while_loop (``loop``). Measured side by side (``tf_enas.benchmarks.hypergrad_cost``,
MNIST-1D, SGD, K = 20, TF 2.21 CPU), relative to K plain training steps:

  =========  ===================  =================================================
  loop       time (MLP / CNN)     graph, trace, retracing
  =========  ===================  =================================================
  python     ~3.0 / ~2.7          O(K) graph; tracing ~0.3 / 0.5 s per step; K static
  while      ~4.6-5.0 / ~3.0-3.2  constant graph and trace; K may be a tensor
  =========  ===================  =================================================

(while_v2's gradient accumulates every intermediate of every step in TensorLists; a
hand-written reverse loop that stores only w_t and recomputes each step measured 4.1 /
3.6, no better.) Memory grows linearly in K either way (benchmark MLP 40-256-10, batch
128, peak RSS: K = 100 took ~30 MiB as a Python loop, ~46 MiB as a while_loop, and 460
MiB at K = 1000; ``forward_hypergradient`` stayed at 6-20 MiB up to K = 3000). Hence ``loop="auto"``: a Python loop when the number of differentiated
steps min(T, K) is a Python constant <= 32 (the usual short-horizon or truncated
hypergradient inside a search), a tf.while_loop otherwise, in particular whenever
``steps`` is a tensor, so that a ``tf.function`` taking K as a tensor never retraces.
"""
import tensorflow as tf

from tf_enas.hypergrad import _lists
from tf_enas.hypergrad import inner_loop

_ZERO = tf.UnconnectedGradients.ZERO
LOOPS = ("auto", "python", "while")
AUTO_PYTHON_MAX_STEPS = 32


def unrolled_hypergradient(train_loss, val_loss, params, hparams, steps, optimizer="sgd",
                           learning_rate=0.1, momentum=0.9, truncate=None, beta2=0.999,
                           epsilon=1e-8, eps_root=1e-16, loop="auto"):
    """(d val_loss(w_K, lambda) / d lambda, w_K) by reverse mode through `steps` optimizer steps.

    train_loss(params, hparams, step) -> scalar (step: int32 tensor, e.g. to pick a
    minibatch); val_loss(params, hparams) -> scalar. optimizer: "sgd", "momentum" (heavy
    ball, ``momentum`` = mu) or "adam" (``momentum`` = beta1). learning_rate, momentum,
    beta2, epsilon: floats or callables of hparams (e.g. ``lambda h: tf.exp(h[0])`` to tune
    the log learning rate). truncate=T: only the last T steps are differentiated; w and the
    optimizer state after the first K-T steps are treated as constants (stop_gradient), so
    the result is d val_loss / d lambda through steps K-T..K-1 only (T >= K: exact).
    Hyperparameters unused by both losses and the optimizer get zero gradients.
    loop: "python", "while" or "auto" (see the module docstring; "python" needs steps and
    truncate as Python ints). Returns (grads shaped like hparams, final params w_K).
    """
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
    count = inner_loop.static_count(steps, truncate)
    if loop == "python" and count is None:
        raise ValueError("loop='python' needs steps (and truncate) as Python ints; pass "
                         "loop='while' to use a tensor number of steps")
    python = count is not None and (loop == "python" or (
        loop == "auto" and count <= AUTO_PYTHON_MAX_STEPS))
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
        if python:
            final, _ = inner_loop.run_python(train_loss, optimizer, params, state, hparams,
                                             hyper_of(hparams), start, count)
        else:
            final, _ = inner_loop.run(train_loss, optimizer, params, state, hparams,
                                      hyper_of(hparams), start, steps)
        loss = val_loss(final, hparams)
    grads = tape.gradient(loss, hparams, unconnected_gradients=_ZERO)
    return _lists.zeros_for_none(grads, hparams), [tf.stop_gradient(w) for w in final]
