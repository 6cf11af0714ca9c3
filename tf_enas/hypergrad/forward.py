"""Forward-mode hypergradient through K optimizer steps (Franceschi et al. 2017).

Z_{t+1} = d step / d(w, s) . Z_t + d step / d lambda . e_j, Z_0 = 0, carried alongside
(w_t, s_t) in one tf.while_loop, one tangent Z per hyperparameter coordinate j; each step's
JVP comes from a ForwardAccumulator around that step. Nothing is stored per step, so
memory is independent of K, and time is (number of hyperparameter coordinates) x (one
step's JVP) per step: the method for a few hyperparameters and long horizons.
"""
import tensorflow as tf

from tf_enas.hypergrad import _lists
from tf_enas.hypergrad import inner_loop

_ZERO = tf.UnconnectedGradients.ZERO


def _basis(hparams):
    """The one-hot tangents e_j over all coordinates of hparams (static count)."""
    sizes = [_lists.num_elements([h]) for h in hparams]
    basis = []
    for owner, (h, size) in enumerate(zip(hparams, sizes)):
        for k in range(size):
            basis.append([tf.reshape(tf.one_hot(k, size, dtype=h.dtype), tf.shape(h))
                          if i == owner else tf.zeros_like(x) for i, x in enumerate(hparams)])
    return basis


def forward_hypergradient(train_loss, val_loss, params, hparams, steps, optimizer="sgd",
                          learning_rate=0.1, momentum=0.9, truncate=None, beta2=0.999,
                          epsilon=1e-8, eps_root=1e-16):
    """(d val_loss(w_K, lambda) / d lambda, w_K) by forward mode; same arguments and result as
    ``unrolled_hypergradient`` (truncate=T: tangents start at zero at step K-T)."""
    params, hparams, steps, optimizer, start = inner_loop.prepare(
        params, hparams, steps, optimizer, truncate)
    dtype = params[0].dtype

    def hyper_of(hp):
        return inner_loop.hyperparameters(hp, dtype, learning_rate, momentum, beta2, epsilon,
                                          eps_root)

    state = optimizer.init(params)
    params, state = inner_loop.run(train_loss, optimizer, params, state, hparams,
                                   hyper_of(hparams), 0, start)
    basis = _basis(hparams)
    n_w = len(params)
    tangents0 = [[tf.zeros_like(x) for x in params + state] for _ in basis]

    def body(t, w, s, tangents):
        new_tangents = []
        for z, e in zip(tangents, basis):
            with tf.autodiff.ForwardAccumulator(w + s + hparams, z + e) as acc:
                w_new, s_new = inner_loop.train_step(train_loss, optimizer, w, s, hparams,
                                                     hyper_of(hparams), t)
            new_tangents.append(_lists.zeros_for_none(
                acc.jvp(w_new + s_new, unconnected_gradients=_ZERO), w_new + s_new))
        return t + 1, w_new, s_new, new_tangents

    _, final, _, tangents = tf.while_loop(
        lambda t, w, s, z: t < steps, body, (start, params, state, tangents0))

    flat = []
    for z, e in zip(tangents, basis):
        with tf.autodiff.ForwardAccumulator(final + hparams, z[:n_w] + e) as acc:
            loss = val_loss(final, hparams)
        flat.append(acc.jvp(loss, unconnected_gradients=_ZERO))
    return _unflatten(tf.stack(flat), hparams), [tf.stop_gradient(w) for w in final]


def _unflatten(flat, hparams):
    """Splits the stacked per-coordinate derivatives back into hparams' shapes and dtypes."""
    out, offset = [], 0
    for h in hparams:
        size = _lists.num_elements([h])
        out.append(tf.reshape(tf.cast(flat[offset:offset + size], h.dtype), tf.shape(h)))
        offset += size
    return out
