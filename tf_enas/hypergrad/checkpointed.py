"""Reverse mode through K optimizer steps in memory O(K/L + L) by recomputation (Griewank).

Forward: run the K steps without a tape, keeping only (w_t, s_t) at t = start + jL.
Backward, segment j = n-1, ..., 0: recompute its steps from checkpoint j under a
GradientTape and pull the adjoint back through them,
    (wbar, sbar)_{jL}, hbar_j = [d(w, s)_{(j+1)L} / d((w, s)_{jL}, lambda)]^T (wbar, sbar)_{(j+1)L},
    dL/dlambda = dL_val/dlambda + sum_j hbar_j.
L = ceil(sqrt(K)) by default: one extra forward pass; memory ceil(K/L) checkpoints plus one
segment's L steps of intermediates, instead of K steps' intermediates.
"""
import numbers

import tensorflow as tf

from tf_enas.hypergrad import _lists
from tf_enas.hypergrad import inner_loop

_ZERO = tf.UnconnectedGradients.ZERO


def segment_length(count, checkpoint_every=None):
    """L: checkpoint_every if given (int >= 1, or an integer tensor: values < 1 act as 1),
    else ceil(sqrt(count))."""
    if checkpoint_every is None:
        root = tf.math.ceil(tf.sqrt(tf.cast(count, tf.float64)))
        return tf.maximum(tf.cast(root, tf.int32), 1)
    if isinstance(checkpoint_every, (tf.Tensor, tf.Variable)):
        ok = checkpoint_every.dtype.is_integer and checkpoint_every.shape.rank in (None, 0)
    else:
        ok = (isinstance(checkpoint_every, numbers.Integral)
              and not isinstance(checkpoint_every, bool) and checkpoint_every >= 1)
    if not ok:
        raise ValueError("checkpoint_every must be an int >= 1, a scalar integer tensor or None, "
                         f"got {checkpoint_every!r}")
    return tf.maximum(tf.cast(checkpoint_every, tf.int32), 1)


def reverse(train_loss, val_loss, optimizer, params, state, hparams, hyper_of, start, stop,
            checkpoint_every=None):
    """(d val_loss(w_stop, lambda) / d hparams, w_stop) through steps start..stop-1 from (w, s).

    hyper_of(hparams) -> the optimizer's scalars (a dict); (params, state) are the values
    at step start, treated as constants. Same result as one tape over all the steps.
    """
    start = tf.convert_to_tensor(start, tf.int32)
    stop = tf.convert_to_tensor(stop, tf.int32)
    count = tf.maximum(stop - start, 0)
    every = segment_length(count, checkpoint_every)
    segments = (count + every - 1) // every
    n_w, n_s = len(params), len(state)
    frozen = [tf.stop_gradient(h) for h in hparams]
    frozen_hyper = hyper_of(frozen)

    def bounds(j):
        seg_start = start + j * every
        return seg_start, tf.minimum(seg_start + every, stop)

    # Forward: checkpoints only.
    arrays = [tf.TensorArray(x.dtype, size=segments, element_shape=x.shape)
              for x in params + state]

    def forward_body(j, w, s, arrays):
        arrays = [a.write(j, x) for a, x in zip(arrays, w + s)]
        w, s = inner_loop.run(train_loss, optimizer, w, s, frozen, frozen_hyper, *bounds(j),
                              max_steps=every)
        return j + 1, w, s, arrays

    _, final, _, arrays = tf.while_loop(
        lambda j, w, s, a: j < segments, forward_body, (tf.constant(0), params, state, arrays),
        maximum_iterations=segments)
    saved = [a.stack() for a in arrays]

    with tf.GradientTape() as tape:
        tape.watch(final + hparams)
        loss = val_loss(final, hparams)
    grads = _lists.zeros_for_none(
        tape.gradient(loss, final + hparams, unconnected_gradients=_ZERO), final + hparams)
    adjoint = grads[:n_w] + [tf.zeros_like(s) for s in state]

    # Backward: recompute each segment under a tape, last segment first.
    def backward_body(j, adjoint, hbar):
        w = [tf.gather(a, j) for a in saved[:n_w]]
        s = [tf.gather(a, j) for a in saved[n_w:]]
        with tf.GradientTape() as tape:
            tape.watch(w + s + hparams)
            w_end, s_end = inner_loop.run(train_loss, optimizer, w, s, hparams,
                                          hyper_of(hparams), *bounds(j), max_steps=every)
        pulled = tape.gradient(w_end + s_end, w + s + hparams, output_gradients=adjoint,
                               unconnected_gradients=_ZERO)
        pulled = _lists.zeros_for_none(pulled, w + s + hparams)
        return j - 1, pulled[:n_w + n_s], _lists.add(hbar, pulled[n_w + n_s:])

    # parallel_iterations=1: a segment's recomputation does not depend on the adjoint, so
    # the default (10) would recompute up to 10 segments at once and hold them all.
    _, _, hbar = tf.while_loop(lambda j, a, h: j >= 0, backward_body,
                               (segments - 1, adjoint, grads[n_w:]), parallel_iterations=1,
                               maximum_iterations=segments)
    return hbar, [tf.stop_gradient(w) for w in final]
