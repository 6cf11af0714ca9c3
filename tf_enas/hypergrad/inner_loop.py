"""The inner training loop shared by the unrolled (reverse) and forward hypergradients.

w_{t+1}, s_{t+1} = update(w_t, grad_w train_loss(w_t, hparams, t), s_t, t, hyper(hparams)),
run as a tf.while_loop over t in [start, stop).
"""
import tensorflow as tf

from tf_enas.hypergrad import _lists
from tf_enas.hypergrad import optimizers as optimizers_lib

_ZERO = tf.UnconnectedGradients.ZERO


def hyperparameters(hparams, dtype, learning_rate, momentum, beta2=0.999, epsilon=1e-8,
                    eps_root=1e-16):
    """The optimizer's scalars; each given as a float or as a callable of hparams (a list)."""
    def value(name, v):
        v = _lists.scalar(v(hparams) if callable(v) else v, dtype)
        if v.shape.rank not in (None, 0):
            raise ValueError(f"optimizer hyperparameter {name} must be a scalar, got shape {v.shape}")
        return v
    return {"learning_rate": value("learning_rate", learning_rate),
            "momentum": value("momentum", momentum), "beta2": value("beta2", beta2),
            "epsilon": value("epsilon", epsilon), "eps_root": value("eps_root", eps_root)}


def train_step(train_loss, optimizer, params, state, hparams, hyper, step):
    """One differentiable step: (w, s) -> update(w, grad_w train_loss(w, hparams, step), s)."""
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = train_loss(params, hparams, step)
    grads = tape.gradient(loss, params, unconnected_gradients=_ZERO)
    return optimizer.update(params, grads, state, step, hyper)


def run(train_loss, optimizer, params, state, hparams, hyper, start, stop, max_steps=None):
    """(w_stop, s_stop) from (w_start, s_start) by stop - start train_steps, as a tf.while_loop.

    max_steps: a bound on stop - start for the loop's maximum_iterations (default
    stop - start), for callers whose bound is a compile-time constant and stop is not.
    """
    start = tf.convert_to_tensor(start, tf.int32)
    stop = tf.convert_to_tensor(stop, tf.int32)
    first, last = tf.get_static_value(start), tf.get_static_value(stop)
    if first is not None and last is not None and last <= first:
        return params, state  # no step: no loop, whose body would trace a train_step
    if max_steps is None:
        max_steps = tf.maximum(stop - start, 0)

    def body(t, w, s):
        w, s = train_step(train_loss, optimizer, w, s, hparams, hyper, t)
        return t + 1, w, s

    # maximum_iterations lets XLA (jit_compile) size the gradient's accumulators when
    # start and stop are compile-time constants.
    _, params, state = tf.while_loop(lambda t, w, s: t < stop, body, (start, params, state),
                                     maximum_iterations=max_steps)
    return params, state


def run_python(train_loss, optimizer, params, state, hparams, hyper, start, count):
    """The same steps t = start, ..., start + count - 1 as an unrolled Python loop (count static)."""
    start = tf.convert_to_tensor(start, tf.int32)
    for j in range(count):
        params, state = train_step(train_loss, optimizer, params, state, hparams, hyper, start + j)
    return params, state


def static_count(steps, truncate):
    """The number of differentiated steps min(T, K) if it is known in Python, else None."""
    k = tf.get_static_value(steps)
    if k is None:
        return None
    if truncate is None:
        return int(k)
    t = tf.get_static_value(tf.convert_to_tensor(truncate))
    return None if t is None else int(min(int(t), int(k)))


def prepare(params, hparams, steps, optimizer, truncate):
    """Shared argument checks: tensors, optimizer, and the first differentiated step."""
    params = _lists.as_tensors(params)
    hparams = _lists.as_tensors(hparams)
    if not params:
        raise ValueError("params is empty")
    if not hparams:
        raise ValueError("hparams is empty")
    optimizer = optimizers_lib.get(optimizer)
    if isinstance(steps, int) and steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    steps = tf.convert_to_tensor(steps, tf.int32)
    if truncate is None:
        start = tf.constant(0, tf.int32)
    else:
        if isinstance(truncate, int) and truncate < 0:
            raise ValueError(f"truncate must be >= 0 or None, got {truncate}")
        count = static_count(steps, truncate)
        # a constant where it is known, so that run() builds no loop for zero steps
        start = (tf.maximum(steps - tf.convert_to_tensor(truncate, tf.int32), 0)
                 if count is None else
                 tf.constant(int(tf.get_static_value(steps)) - count, tf.int32))
    return params, hparams, steps, optimizer, start
