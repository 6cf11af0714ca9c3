"""hvp / hessian against central finite differences and closed forms, under tf.function.

Keras models enter through functional_loss (model.stateless_call); float64 throughout.
Tolerance: relative 1e-6 (central differences with eps = 1e-5 have error ~1e-9 here).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_enas.hypergrad import functional_loss, gradient, hessian, hvp, model_params
from tf_enas.hypergrad.hvp import MODES


def rel_err(a, b):
    return np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b))


def flat(xs):
    return np.concatenate([np.ravel(np.asarray(x)) for x in xs])


def ce(y, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)


def build(kind):
    keras.utils.set_random_seed(0)
    if kind == "dense":
        layers = [keras.Input((12,), dtype="float64"),
                  keras.layers.Dense(7, activation="tanh", dtype="float64"),
                  keras.layers.Dense(3, dtype="float64")]
    elif kind == "conv1d":
        layers = [keras.Input((12, 2), dtype="float64"),
                  keras.layers.Conv1D(4, 3, padding="same", activation="tanh", dtype="float64"),
                  keras.layers.Conv1D(4, 3, strides=2, activation="tanh", dtype="float64"),
                  keras.layers.Flatten(dtype="float64"), keras.layers.Dense(3, dtype="float64")]
    else:
        layers = [keras.Input((12, 2), dtype="float64"),
                  keras.layers.SeparableConv1D(4, 3, padding="same", activation="tanh",
                                               dtype="float64"),
                  keras.layers.Flatten(dtype="float64"), keras.layers.Dense(3, dtype="float64")]
    model = keras.Sequential(layers)
    shape = (10, 12) if kind == "dense" else (10, 12, 2)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=shape))
    y = tf.constant(rng.integers(0, 3, size=10), tf.int32)
    return model, x, y


@pytest.mark.parametrize("kind", ["dense", "conv1d", "separable_conv1d"])
def test_hvp_of_keras_model_matches_finite_differences_under_tf_function(kind):
    model, x, y = build(kind)
    f = functional_loss(model, ce)
    params = model_params(model)
    rng = np.random.default_rng(2)
    v = [tf.constant(rng.normal(size=p.shape)) for p in params]
    loss = lambda ps: f(ps, x, y)  # noqa: E731
    grad_fn = tf.function(lambda ps: gradient(loss, ps)[1])
    eps = 1e-5
    plus = grad_fn([p + eps * vi for p, vi in zip(params, v)])
    minus = grad_fn([p - eps * vi for p, vi in zip(params, v)])
    reference = (flat(plus) - flat(minus)) / (2 * eps)
    for mode in MODES:
        got = tf.function(lambda ps, vs, mode=mode: hvp(loss, ps, vs, mode=mode))(params, v)
        err = rel_err(flat(got), reference)
        print(f"hvp {kind} {mode} vs central FD: rel err {err:.2e}")
        assert err <= 1e-6, mode


def test_functional_loss_equals_model_call_and_checks_arity():
    model, x, y = build("conv1d")
    f = functional_loss(model, ce)
    expected = tf.reduce_mean(ce(y, model(x)))
    np.testing.assert_allclose(f(model_params(model), x, y).numpy(), expected.numpy(), rtol=1e-12)
    shifted = [p + 0.1 for p in model_params(model)]
    for var, p in zip(model.trainable_variables, shifted):
        var.assign(p)
    np.testing.assert_allclose(f(shifted, x, y).numpy(), tf.reduce_mean(ce(y, model(x))).numpy(),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="trainable variables"):
        f(shifted[:-1], x, y)


def test_hessian_and_hvp_match_logistic_regression_closed_form():
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(20, 4))
    ys = (rng.random(20) < 0.5).astype(np.float64)
    w = rng.normal(size=4) * 0.3
    bias = np.array(0.2)

    def loss(ps):
        z = tf.linalg.matvec(tf.constant(xs), ps[0]) + ps[1]
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.constant(ys), z))

    p = 1 / (1 + np.exp(-(xs @ w + bias)))
    design = np.hstack([xs, np.ones((20, 1))])
    closed = design.T @ np.diag(p * (1 - p)) @ design / 20  # X^T diag(p(1-p)) X / n
    params = [tf.constant(w), tf.constant(bias)]
    h = tf.function(lambda ps: hessian(loss, ps))(params)
    assert rel_err(h.numpy(), closed) <= 1e-12
    v = rng.normal(size=5)
    for mode in MODES:
        hv = tf.function(lambda ps, vs, mode=mode: hvp(loss, ps, vs, mode=mode))(
            params, [tf.constant(v[:4]), tf.constant(v[4])])
        assert rel_err(flat(hv), closed @ v) <= 1e-12, mode


def test_hvp_of_unused_parameter_is_zero_and_bad_mode_raises():
    params = [tf.constant([1.0, 2.0], tf.float64), tf.constant(3.0, tf.float64)]
    loss = lambda ps: tf.reduce_sum(ps[0] ** 3)  # noqa: E731  (ps[1] unused)
    vec = [tf.constant([1.0, -1.0], tf.float64), tf.constant(1.0, tf.float64)]
    for mode in MODES:
        out = hvp(loss, params, vec, mode=mode)
        np.testing.assert_allclose(out[0].numpy(), [6.0, -12.0])  # diag(6 w) v
        assert float(out[1]) == 0.0
        as_vars = tf.function(lambda vs, mode=mode: hvp(loss, vs, vec, mode=mode))(
            [tf.Variable(p) for p in params])
        np.testing.assert_allclose(flat(as_vars), [6.0, -12.0, 0.0])
    with pytest.raises(ValueError, match="mode"):
        hvp(loss, params, vec, mode="sideways")
