"""Every supernet op's Hessian-vector product under tf.function vs central finite
differences of its gradient, in float64 (DESIGN.md §3)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_enas.space import OPS
from tf_enas.supernet import BatchNorm, MaxPool, make_op


@pytest.fixture
def float64():
    """float64 layers with seeded initial weights: central differences are wrong where a
    ReLU input lies within ε of its kink, which an unseeded draw hits about 1 in 20
    times (sepconv5, rank 2)."""
    keras.utils.set_random_seed(0)
    old, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(old)
    keras.config.set_dtype_policy(policy)


def relative_hvp_error(loss, params, seed=0):
    """max |HVP − FD| / max |FD|: HVP by nested tapes under tf.function, FD by central
    differences (ε = 1e-5) of the tf.function gradient along a random direction."""
    rng = np.random.default_rng(seed)
    vec = [tf.constant(rng.normal(size=p.shape)) for p in params]

    def grad_of(p):
        with tf.GradientTape() as t:
            t.watch(p)
            f = loss(p)
        return t.gradient(f, p)

    @tf.function
    def hvp(p):
        with tf.GradientTape() as outer:
            outer.watch(p)
            gv = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(grad_of(p), vec)])
        return outer.gradient(gv, p)

    grad = tf.function(grad_of)
    eps = 1e-5
    gp = grad([p + eps * v for p, v in zip(params, vec)])
    gm = grad([p - eps * v for p, v in zip(params, vec)])
    fd = [(a - b) / (2 * eps) for a, b in zip(gp, gm)]
    h = hvp(params)
    num = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(h, fd))
    return num / max(float(tf.reduce_max(tf.abs(b))) for b in fd)


def functional(layer, x, **kwargs):
    """Weights → Σ r ⊙ tanh(layer(x)) in training mode, via stateless_call."""
    r = tf.constant(np.random.default_rng(1).normal(size=layer(x, training=True,
                                                                **kwargs).shape))
    ntv = [v.value for v in layer.non_trainable_variables]

    def loss(params):
        y, _ = layer.stateless_call(params, ntv, x, training=True, **kwargs)
        return tf.reduce_sum(r * tf.tanh(y))

    return loss, [tf.identity(v.value) for v in layer.trainable_variables]


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("op", OPS)
def test_op_hvp_matches_finite_differences(float64, op, rank):
    shape = (6, 10, 4) if rank == 1 else (4, 6, 6, 4)
    x = tf.constant(np.random.default_rng(2).normal(size=shape))
    layer = make_op(op, 4, rank)
    layer.build(shape)
    loss, params = functional(layer, x, update_stats=False)
    assert relative_hvp_error(loss, params) < 1e-6


def test_batchnorm_hvp_including_the_mean_path(float64):
    """The input-side HVP goes through the batch mean, which Keras's BatchNormalization
    stops; this layer must match finite differences."""
    x = tf.constant(np.random.default_rng(3).normal(size=(8, 5, 3)))
    conv = keras.layers.Conv1D(3, 3, padding="same")
    bn = BatchNorm()
    model = keras.Sequential([keras.Input((5, 3)), conv, bn])
    loss, params = functional(model, x)
    assert relative_hvp_error(loss, params) < 1e-6


@pytest.mark.parametrize("rank", [1, 2])
def test_maxpool_hvp_and_values(float64, rank):
    shape = (4, 9, 3) if rank == 1 else (2, 5, 5, 3)
    x = tf.constant(np.random.default_rng(4).normal(size=shape))
    conv = (keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D)(3, 3, padding="same")
    model = keras.Sequential([keras.Input(shape[1:]), conv, MaxPool(3, rank)])
    loss, params = functional(model, x)
    assert relative_hvp_error(loss, params) < 1e-6
    # values equal Keras's own max pooling (stride 1, same)
    keras_pool = (keras.layers.MaxPooling1D if rank == 1 else keras.layers.MaxPooling2D)(
        3, strides=1, padding="same")
    np.testing.assert_allclose(MaxPool(3, rank)(x), keras_pool(x), rtol=0, atol=0)


def test_batchnorm_moments_and_moving_update():
    x = np.random.default_rng(5).normal(2.0, 3.0, size=(64, 7, 2)).astype(np.float32)
    bn = BatchNorm(momentum=0.5)
    y = bn(x, training=True).numpy()
    np.testing.assert_allclose(y.mean((0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(y.std((0, 1)), 1, atol=1e-3)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * x.mean((0, 1)), rtol=1e-5)
    before = bn.moving_mean.numpy()
    bn(x, training=True, update_stats=False)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


def test_harness_detects_the_keras_layers_it_replaces(float64):
    """The same check flags Keras's BatchNormalization and MaxPooling1D (DESIGN.md §3),
    so a pass above means something."""
    x = tf.constant(np.random.default_rng(3).normal(size=(8, 5, 3)))
    bn = keras.Sequential([keras.Input((5, 3)), keras.layers.Conv1D(3, 3, padding="same"),
                           keras.layers.BatchNormalization()])
    assert relative_hvp_error(*functional(bn, x)) > 1e-3
    x = tf.constant(np.random.default_rng(4).normal(size=(4, 9, 3)))
    pool = keras.Sequential([keras.Input((9, 3)), keras.layers.Conv1D(3, 3, padding="same"),
                             keras.layers.MaxPooling1D(3, strides=1, padding="same")])
    assert relative_hvp_error(*functional(pool, x)) > 1e-3
