"""Micro supernet: HVPs of its ops vs finite differences (float64, tf.function), MixedOp
equals the standalone op it selects, child_model equals the supernet on its child, no
retracing across 20 children."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.supernet.test_ops import float64, functional, relative_hvp_error  # noqa: F401
from tf_enas.cell_space import MICRO_OPS, MicroSpace
from tf_enas.supernet.micro import (Cell, MicroSupernet, MixedOp, Reduce, default_reductions,
                                    make_micro_op)
from tests.supernet.traces import traces_over_twenty_children


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("op", range(len(MICRO_OPS)))
def test_mixed_op_hvp_matches_finite_differences(float64, op, rank):
    """The supernet's op (selected kernels + one-hot mix) for every choice; identity and
    the pools have no weights of their own, so the loss goes through a conv before them."""
    shape = (6, 8, 3) if rank == 1 else (3, 5, 5, 3)
    x = tf.constant(np.random.default_rng(2).normal(size=shape))
    conv = (keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D)(3, 3, padding="same")
    mixed = MixedOp(3, rank)
    model = keras.Sequential([keras.Input(shape[1:]), conv])
    model.build((None, *shape[1:]))
    mixed.build(shape)

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv, self.mixed = conv, mixed

        def call(self, x, training=False, update_stats=False):
            return self.mixed(self.conv(x), tf.constant(op), training=training,
                              update_stats=update_stats)

    net = Net()
    net(x, training=True)
    loss, params = functional(net, x)
    assert relative_hvp_error(loss, params) < 1e-6


@pytest.mark.parametrize("rank", [1, 2])
def test_reduce_and_sepconv_hvp(float64, rank):
    shape = (6, 8, 3) if rank == 1 else (3, 6, 6, 3)
    x = tf.constant(np.random.default_rng(3).normal(size=shape))
    for layer in (Reduce(4, rank), make_micro_op("sepconv5", 3, rank)):
        layer.build(shape)
        loss, params = functional(layer, x, update_stats=False)
        assert relative_hvp_error(loss, params) < 1e-6


def test_cell_hvp_through_input_selection(float64):
    """A whole supernet cell (gathered inputs, mixed ops, loose-end average) for a child
    whose nodes read both cell inputs and an earlier node."""
    shape = (4, 6, 2)
    rng = np.random.default_rng(4)
    xs = [tf.constant(rng.normal(size=shape)) for _ in range(2)]
    cell = Cell(2, 2, 1)
    cell.build([shape, shape])
    indices, ops = tf.constant([[0, 1], [2, 0]]), tf.constant([[1, 3], [2, 4]])
    loss, params = functional(cell, xs, indices=indices, ops=ops, update_stats=False)
    assert relative_hvp_error(loss, params) < 1e-6


@pytest.mark.parametrize("op", range(len(MICRO_OPS)))
def test_mixed_op_equals_the_standalone_op(op):
    """Values (training and inference) and the moving moments: only the chosen sepconv's
    move, by the same amount as the standalone op's."""
    x = tf.random.stateless_normal((8, 12, 3), [0, op])
    mixed = MixedOp(3, 1)
    mixed.build(x.shape)
    alone = make_micro_op(MICRO_OPS[op], 3, 1)
    alone.build(x.shape)
    if op in (1, 2):
        alone.set_weights(mixed.sepconv(op).get_weights())
    before = [v.numpy() for v in mixed.non_trainable_variables]
    np.testing.assert_allclose(mixed(x, tf.constant(op), training=True),
                               alone(x, training=True), atol=1e-5)
    after = {v.path: v.numpy() for v in mixed.non_trainable_variables}
    moved = {p for (p, a), b in zip(after.items(), before) if not np.array_equal(a, b)}
    expected = {v.path for v in mixed.sepconv(op).non_trainable_variables} if op in (1, 2) \
        else set()
    assert moved == expected
    if op in (1, 2):
        np.testing.assert_allclose(mixed.sepconv(op).bn.moving_mean, alone.bn.moving_mean,
                                   atol=1e-6)
    np.testing.assert_allclose(mixed(x, tf.constant(op), training=False),
                               alone(x, training=False), atol=1e-5)


def test_space_text_form_and_loose_ends():
    space = MicroSpace(3, choices={"learning_rate": (0.01, 0.1)})
    assert len(space) == 2 * 3 * 4 + 1
    assert [d.num_values for d in space.decisions[:4]] == [2, 2, 5, 5]
    rng = np.random.default_rng(0)
    for _ in range(20):
        child = space.random(rng)
        np.testing.assert_array_equal(space.parse(space.to_string(child)), child)
    text = ("normal: 0:sepconv3+1:identity, 2:avgpool3+0:maxpool3, 3:sepconv5+1:sepconv5 ; "
            "reduce: 1:identity+1:identity, 0:identity+1:identity, 2:identity+3:identity ; "
            "learning_rate=0.1")
    child = space.parse(text)
    assert space.to_string(child) == text
    assert space.loose_ends(child, "normal") == [2]     # node 0 read by 1, node 1 by 2
    assert space.loose_ends(child, "reduce") == [2]
    with pytest.raises(ValueError, match="input '5' must be in"):
        space.parse(text.replace("3:sepconv5", "5:sepconv5"))
    with pytest.raises(ValueError, match="not one of"):
        space.parse(text.replace("sepconv3", "conv3"))
    with pytest.raises(ValueError, match="missing the reduce cell"):
        space.parse(text.split(" ; reduce")[0] + " ; learning_rate=0.1")


@pytest.mark.parametrize("shape", [(24, 1), (8, 8, 1)])
def test_child_model_with_inherited_weights_equals_supernet(shape):
    space = MicroSpace(3)
    keras.utils.set_random_seed(0)
    net = MicroSupernet(space, shape, 10, width=4, num_cells=1)
    x = tf.random.normal((16, *shape))
    rng = np.random.default_rng(1)
    for _ in range(3):  # non-trivial moving moments first
        net(x, space.random(rng), training=True)
    for _ in range(4):
        child = space.random(rng)
        model = net.child_model(child)
        np.testing.assert_allclose(model(x, training=False), net(x, child, training=False),
                                   atol=1e-5)
        np.testing.assert_allclose(model(x, training=True),
                                   net(x, child, training=True, update_stats=False), atol=1e-5)
        # only the chosen ops are in the child: parameters add up
        sep = sum(net.cells[c].ops[f"node{i}_{s}"].sepconv(o).count_params()
                  for c, kind in enumerate(net._stack.kinds)
                  for i, (ops) in enumerate(space.cell_arrays(child, kind)[1])
                  for s, o in enumerate(ops) if o in (1, 2))
        fixed = net.stem.count_params() + net.head.count_params() + sum(
            r.count_params() for pair in net._stack.reduces.values() for r in pair)
        assert model.count_params() == fixed + sep


def test_deeper_child_is_the_deeper_supernets_child():
    """child_model(num_cells=2) of a 1-cell-per-stage supernet is the child of a supernet
    built with 2 cells per stage: the same layers, the same outputs with its weights."""
    space = MicroSpace(3)
    shallow = MicroSupernet(space, (24, 1), 10, width=4, num_cells=1)
    deep = MicroSupernet(space, (24, 1), 10, width=4, num_cells=2)
    child = space.random(np.random.default_rng(4))
    model = shallow.child_model(child, inherit_weights=False, num_cells=2)
    reference = deep.child_model(child)
    assert [l.name for l in model.layers] == [l.name for l in reference.layers]
    assert len(deep._stack.kinds) == 5 and model.count_params() == reference.count_params()
    model.set_weights(reference.get_weights())
    x = tf.random.normal((4, 24, 1))
    np.testing.assert_allclose(model(x), deep(x, child), atol=1e-5)
    with pytest.raises(ValueError, match="num_cells"):
        shallow.child_model(child, num_cells=2)


def test_twenty_children_one_trace():
    space = MicroSpace(2)
    net = MicroSupernet(space, (16, 1), 10, width=4)
    assert traces_over_twenty_children(net, space, tf.random.normal((4, 16, 1))) == 1


def test_child_model_saves_and_loads(tmp_path):
    space = MicroSpace(2)
    net = MicroSupernet(space, (16, 1), 10, width=4)
    child = space.random(np.random.default_rng(3))
    model = net.child_model(child, inherit_weights=False, width=6)
    x = np.random.default_rng(2).normal(size=(5, 16, 1)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="width"):
        net.child_model(child, inherit_weights=True, width=6)


def test_default_reductions_keep_sixteen_positions():
    """ENAS's 2 reductions where the last stage keeps >= 16 positions, else 1: MNIST-1D's
    40 → 20 (10 after 2), CIFAR's 32×32 → 8×8; the supernet and child use it."""
    assert [default_reductions(s) for s in [(40, 1), (64, 1), (32, 32, 3), (28, 28, 1),
                                            (8, 8, 1)]] == [1, 2, 2, 2, 1]
    space = MicroSpace(2)
    net = MicroSupernet(space, (40, 1), 10, width=4)
    assert net.reductions == 1 and net._stack.kinds == ["normal", "reduce", "normal"]
    child = space.random(np.random.default_rng(0))
    assert len([layer for layer in net.child_model(child).layers
                if layer.name.startswith("cell_")]) == 3


def test_drop_path_keeps_the_expected_cell_output():
    """A child cell whose nodes read only the cell's inputs is linear in the drop-path
    masks, so E[output] = the output without drop-path; each dropped path is 0 per
    example and a kept one is scaled by 1 / (1 − r)."""
    keras.utils.set_random_seed(0)
    arc = {"inputs": [[0, 1], [1, 1]], "ops": [[1, 3], [0, 2]]}  # sepconv3, avgpool3 | id, sepconv5
    x = [tf.random.normal((4, 8, 3)), tf.random.normal((4, 8, 3))]
    plain, dropped = Cell(2, 3, arc=arc), Cell(2, 3, arc=arc, drop_path=0.4)
    plain.build([x[0].shape] * 2)
    dropped.build([x[0].shape] * 2)
    for name, op in plain.ops.items():
        dropped.ops[name].set_weights(op.get_weights())
    np.testing.assert_allclose(dropped(x, training=False), plain(x, training=False), atol=1e-6)
    want = plain(x, training=True).numpy()
    draws = np.stack([dropped(x, training=True).numpy() for _ in range(1000)])
    z = (draws.mean(0) - want) / (draws.std(0, ddof=1) / np.sqrt(len(draws)))
    assert np.abs(z).max() < 5.0
    y = dropped.drop(tf.ones((20000, 2, 1)), training=True).numpy()
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.6], rtol=1e-6)
    assert abs((y[:, 0, 0] == 0).mean() - 0.4) < 5 * np.sqrt(0.4 * 0.6 / 20000)
    assert np.all(y[:, 0] == y[:, 1])  # one draw per example


def test_drop_path_rate_rises_linearly_over_the_retrain():
    """retrain.train (the product's retrain) sets every DropPath's rate to
    max_rate · epoch / epochs at each epoch: 0.4 · 3 / 4 in the last of 4 epochs."""
    from tf_enas.data import load
    from tf_enas.retrain import RetrainConfig, train

    space = MicroSpace(2)
    splits = load("mnist1d", seed=0, num_samples=600)
    net = MicroSupernet(space, splits.input_shape, 10, width=4)
    model = net.child_model(space.random(np.random.default_rng(1)), inherit_weights=False,
                            drop_path=0.4)
    train(model, splits, RetrainConfig(epochs=4, drop_path=0.4))
    rates = [float(layer.drop.rate.numpy()) for layer in model.layers
             if layer.name.startswith("cell_")]
    assert len(rates) == 3 and np.allclose(rates, 0.3)  # one per cell
