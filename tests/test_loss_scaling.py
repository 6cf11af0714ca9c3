"""Dynamic loss scaling of the shared-weight step under mixed_float16 (shared_weights.py):
float16 gradients that underflow without scaling give the float32 update with it; a
non-finite step is skipped and halves S; S doubles after `growth_steps` applied steps and
is saved in the checkpoint."""
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tf_enas import distribute
from tf_enas.objective import Hyperparameters
from tf_enas.search import SearchConfig
from tf_enas.shared_weights import DynamicLossScale, SharedWeights, StaticChild

TINY = 1e-7  # logits = TINY·Dense(x): CE gradients ~1e-8, below float16's smallest ~6e-8
LR = 0.1


class _Tiny(keras.layers.Layer):
    """t ↦ TINY·t in float32."""

    def call(self, t):
        return TINY * tf.cast(t, tf.float32)


def _shared(policy, loss_scale=None):
    with distribute.dtype_policy(policy):
        inp = keras.Input((8,))
        h = keras.layers.Dense(4, name="dense",
                               kernel_initializer=keras.initializers.GlorotUniform(0))(inp)
        model = keras.Model(inp, _Tiny(dtype="float32")(h))
    config = dataclasses.replace(SearchConfig(), mixed_precision=policy, lr_max=LR)
    hp = lambda child, values: Hyperparameters(tf.constant(LR), tf.constant(0.9),
                                               tf.constant(0.0))
    return SharedWeights(StaticChild(model), config, 10, hp, loss_scale), model


def _batch():
    rng = np.random.default_rng(0)
    return (tf.constant(rng.normal(size=(4, 8)), tf.float32),
            tf.constant([0, 0, 1, 0], tf.int32))


def _update(shared, model, x, y):
    """(change of the weights, new velocity, logs) of one shared step."""
    before = [v.numpy() for v in model.trainable_variables]
    logs = shared.train_step(x, y, tf.zeros([1], tf.int32), tf.zeros([0]))
    return ([v.numpy() - b for v, b in zip(model.trainable_variables, before)],
            [v.numpy() for v in shared.velocity], logs)


def test_float16_gradients_underflow_without_scaling_and_match_float32_with_it():
    x, y = _batch()
    shared16, model16 = _shared("mixed_float16")
    shared32, model32 = _shared("none")
    assert shared32.loss_scale is None and float(shared16.loss_scale.scale) == 2.0 ** 15
    assert model16.get_layer("dense").compute_dtype == "float16"
    # without scaling: every float16 gradient of the tiny loss is exactly 0
    with tf.GradientTape() as tape:
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            y, model16(x, training=True)))
    assert all(not np.any(g.numpy()) for g in tape.gradient(ce, model16.trainable_variables))
    # with scaling: the float32 step, to float16 precision. From zero velocity the new
    # velocity is the gradient g (w moves by η·g ~ 1e-9, below float32's resolution at w)
    _, v16, logs = _update(shared16, model16, x, y)
    _, v32, _ = _update(shared32, model32, x, y)
    assert float(logs["train/step_skipped"]) == 0
    for a, b in zip(v16, v32):
        assert np.abs(b).max() > 1e-10
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-3 * np.abs(b).max())


def test_non_finite_step_is_skipped_and_halves_the_scale_which_grows_back(tmp_path):
    x, y = _batch()
    shared, model = _shared("mixed_float16", DynamicLossScale(growth_steps=2))
    bad = tf.tensor_scatter_nd_update(x, [[0, 0]], [np.inf])
    delta, velocity, logs = _update(shared, model, bad, y)
    assert float(logs["train/step_skipped"]) == 1 and int(shared.skipped_steps) == 1
    assert all(not np.any(d) for d in delta + velocity)  # weights and velocity untouched
    assert float(shared.loss_scale.scale) == 2.0 ** 14
    _update(shared, model, x, y)
    assert float(shared.loss_scale.scale) == 2.0 ** 14 and int(shared.loss_scale.good_steps) == 1
    _update(shared, model, x, y)  # the second applied step in a row: S doubles
    assert float(shared.loss_scale.scale) == 2.0 ** 15 and int(shared.loss_scale.good_steps) == 0
    _update(shared, model, x, y)
    path = tf.train.Checkpoint(shared=shared).save(str(tmp_path / "ckpt"))
    restored, _ = _shared("mixed_float16", DynamicLossScale(growth_steps=2))
    tf.train.Checkpoint(shared=restored).restore(path).assert_consumed()
    assert float(restored.loss_scale.scale) == 2.0 ** 15
    assert int(restored.loss_scale.good_steps) == 1
