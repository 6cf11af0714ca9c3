"""Supernet: no retracing per child, child_model equals the supernet on its child."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_enas.space import SearchSpace
from tf_enas.supernet import Supernet, reduction_layers
from tests.supernet.traces import traces_over_twenty_children


@pytest.mark.parametrize("shape", [(40, 1), (8, 8, 1)])
def test_twenty_children_one_trace(shape):
    space = SearchSpace(6)
    net = Supernet(space, shape, 10, width=8)
    assert traces_over_twenty_children(net, space, tf.random.normal((4, *shape))) == 1


@pytest.mark.parametrize("shape", [(40, 1), (8, 8, 1)])
def test_child_model_with_inherited_weights_equals_supernet(shape):
    space = SearchSpace(6)
    keras.utils.set_random_seed(0)
    net = Supernet(space, shape, 10, width=8)
    x = tf.random.normal((16, *shape))
    rng = np.random.default_rng(1)
    # give BN moving statistics non-trivial values first
    for _ in range(3):
        net(x, space.random(rng), training=True)
    for _ in range(5):
        child = space.random(rng)
        model = net.child_model(child)
        np.testing.assert_allclose(model(x, training=False), net(x, child, training=False),
                                   atol=1e-5)
        np.testing.assert_allclose(model(x, training=True),
                                   net(x, child, training=True, update_stats=False), atol=1e-5)
        # every op not in the child is absent: parameter counts add up
        ops = space.layer_ops(child)
        expected = (net.stem.count_params() + net.head.count_params()
                    + sum(l.ops[o].count_params() + l.bn.count_params()
                          for l, o in zip(net.layers_, ops)))
        assert model.count_params() == expected


def test_child_model_saves_and_loads(tmp_path):
    space = SearchSpace(4)
    net = Supernet(space, (40, 1), 10, width=8)
    child = space.parse("maxpool3 | sepconv5+0 | avgpool3+0,1 | conv5+1")
    model = net.child_model(child, inherit_weights=False, width=12)
    x = np.random.default_rng(2).normal(size=(5, 40, 1)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="width"):
        net.child_model(child, inherit_weights=True, width=12)


def test_reduction_layers_follow_enas():
    assert reduction_layers(12) == (3, 7)
    assert reduction_layers(6) == (1, 3)
    assert reduction_layers(2) == ()
