"""fused_adam against Keras's own Adam (the reference): the same variables, slots and
step count after many steps, and Keras's path for an optimizer with extras."""
import keras
import numpy as np
import tensorflow as tf

from tf_enas import fused_adam

SHAPES = [(3, 4), (5,), (2, 2, 2)]


def _pair(**kwargs):
    rng = np.random.default_rng(0)
    fused = [tf.Variable(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
    keras_vars = [tf.Variable(v) for v in fused]
    optimizers = keras.optimizers.Adam(0.05, **kwargs), keras.optimizers.Adam(0.05, **kwargs)
    optimizers[0].build(fused)
    optimizers[1].build(keras_vars)
    return fused, keras_vars, optimizers


def _run(fused, keras_vars, optimizers, steps=25):
    rng = np.random.default_rng(1)
    step = tf.function(lambda g: fused_adam.apply_gradients(optimizers[0], g, fused))
    for _ in range(steps):
        grads = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
        step(grads)
        optimizers[1].apply_gradients(zip(grads, keras_vars))


def test_fused_steps_equal_keras_adam():
    fused, keras_vars, optimizers = _pair()
    assert fused_adam.is_plain_adam(optimizers[0])
    _run(fused, keras_vars, optimizers)
    assert int(optimizers[0].iterations) == 25
    for a, b in zip(fused + optimizers[0].variables, keras_vars + optimizers[1].variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=2e-5)
    # what an unfused step moves a variable by (lr 0.05): far above the tolerance
    assert np.abs(fused[0].numpy() - np.random.default_rng(0).normal(
        size=SHAPES[0])).max() > 0.05


def test_an_optimizer_with_extras_takes_keras_path():
    fused, keras_vars, optimizers = _pair(clipnorm=0.1)
    assert not fused_adam.is_plain_adam(optimizers[0])
    _run(fused, keras_vars, optimizers, steps=5)
    for a, b in zip(fused, keras_vars):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)
