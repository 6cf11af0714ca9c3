"""Cell spaces in the one search loop: the cell controllers are distributions over exactly
the space's children (enumeration), and a Search step on space="micro" / "rnn_cell" runs
jointly with continuous optimizer decisions and the unrolled response estimator."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tf_enas import data, found_child
from tf_enas.cell_controller import CellController, JointCellController
from tf_enas.cell_space import MicroSpace, RNNCellSpace
from tf_enas.controller import ControllerConfig
from tf_enas.joint_controller import DEFAULTS
from tf_enas.retrain import RetrainConfig
from tf_enas.search import Search, SearchConfig
from tf_enas.supernet.micro import MicroSupernet
from tf_enas.supernet.rnn_cell import RNNSupernet


def all_children(space):
    return np.array(list(itertools.product(*[range(d.num_values) for d in space.decisions])),
                    np.int32)


@pytest.mark.parametrize("space", [RNNCellSpace(3, choices={"learning_rate": (0.01, 0.1)}),
                                   MicroSpace(1)])
def test_controller_is_a_distribution_over_the_space(space):
    """Σ over every child of exp(log π(child)) = 1 (4·4·2·4·2 = 256 recurrent children,
    (2·2·5·5)² = 10⁴ micro children), and sampled children are valid."""
    ctl = CellController(space, ControllerConfig(lstm_size=8, tanh_constant=None), seed=1)
    children = all_children(space)
    total = np.exp(ctl.log_prob(tf.constant(children)).numpy().astype(np.float64)).sum()
    assert total == pytest.approx(1.0, abs=1e-4)
    sampled, values = ctl.sample(64)
    assert values.shape == (64, 0)
    for c in sampled.numpy():
        space.validate(c)


def test_micro_op_logits_reduced_as_enas():
    """A micro cell's op logits are bounded by tanh_constant / OP_TANH_REDUCE (ENAS's
    op_tanh_reduce), index logits and the recurrent cell's by tanh_constant; the
    controller stays a distribution over the space."""
    from tf_enas.cell_controller import OP_TANH_REDUCE
    config = ControllerConfig(lstm_size=8, temperature=5.0, tanh_constant=1.1)
    raw = tf.constant([[-1e3, -1.0, 0.0, 2.0, 1e3]])
    micro = CellController(MicroSpace(1), config, seed=1)
    bound = 1.1 / OP_TANH_REDUCE
    np.testing.assert_allclose(micro._op_logits(raw).numpy(),
                               bound * np.tanh(raw.numpy() / 5.0), rtol=1e-6)
    rnn = CellController(RNNCellSpace(3), config, seed=1)
    np.testing.assert_allclose(rnn._op_logits(raw).numpy(), rnn._logits(raw).numpy())
    children = all_children(MicroSpace(1))
    total = np.exp(micro.log_prob(tf.constant(children)).numpy().astype(np.float64)).sum()
    assert total == pytest.approx(1.0, abs=1e-4)


def test_joint_cell_controller_continuous_after_the_cell():
    space = MicroSpace(2)
    ctl = JointCellController(space, (DEFAULTS["learning_rate"], DEFAULTS["momentum"]),
                              ControllerConfig(lstm_size=8), seed=0)
    children, values = ctl.sample(16)
    assert children.shape == (16, len(space)) and values.shape == (16, 2)
    lr = values[:, 0].numpy()
    assert np.all((lr > 0) & np.isfinite(lr))
    # the joint log-density is the categorical part plus the Normal densities of z
    walk = ctl.walk(16, children, values)
    np.testing.assert_allclose(ctl.log_prob(children, values),
                               tf.reduce_sum(walk.discrete_log_prob, 1)
                               + walk.continuous_log_prob, rtol=1e-5)
    assert set(ctl.medians(children[0].numpy())) == {"learning_rate", "momentum"}


@pytest.fixture(scope="module")
def splits():
    """MNIST-1D subsampled to length 8 (every 5th point): the unrolled recurrent graph and
    its second derivatives are 5× smaller to trace."""
    s = data.load("mnist1d", seed=0, val_fraction=0.1, num_samples=600)
    return data.from_arrays(s.x_train[:, ::5], s.y_train, s.x_test[:, ::5], s.y_test,
                            name="mnist1d_len8", seed=0, val_fraction=0.1)


class OneReductionSearch(Search):
    """The micro supernet with one reduction cell (3 cells, not 5), through the
    build_supernet override point: a third of the graph to trace."""

    def build_supernet(self):
        if self.config.space != "micro":
            return super().build_supernet()
        return MicroSupernet(self.space, self.splits.input_shape, self.splits.num_classes,
                             width=self.config.width, num_cells=1, reductions=1)


@pytest.mark.parametrize("space", ["micro", "rnn_cell"])
def test_search_step_joint_with_unrolled_response(tmp_path, splits, space):
    """One shared step and one controller step of the joint search (learning rate,
    momentum, weight decay continuous; reward −L_val after one lookahead step; unrolled
    response): finite, the response computed and non-zero, weights and policy moved."""
    cfg = SearchConfig(
        num_samples=600, space=space, num_nodes=1 if space == "micro" else 2, num_cells=1,
        width=4, batch_size=64, controller=ControllerConfig(lstm_size=8), controller_steps=1,
        controller_batch=2, val_batch_size=32, epochs=1, derive_samples=2,
        retrain=RetrainConfig(epochs=1, optimizer="sgd"),
        continuous=("learning_rate", "momentum", "weight_decay"), reward="loss",
        lookahead_steps=1, lookahead_batch_size=16, response="unrolled")
    search = OneReductionSearch(cfg, str(tmp_path), splits=splits, verbose=0)
    assert type(search.space).__name__ == {"micro": "MicroSpace", "rnn_cell": "RNNCellSpace"}[space]
    assert isinstance(search.controller, JointCellController)
    weights = [v.numpy() for v in search.supernet.trainable_variables]
    policy = [v.numpy() for v in search.controller.trainable_variables]
    logs = search.train_step(tf.constant(splits.x_train[:64]), tf.constant(splits.y_train[:64]))
    assert np.isfinite(float(logs["train/loss"])) and float(logs["train/step_skipped"]) == 0
    logs = search.controller_step(tf.constant(splits.x_val[:32]), tf.constant(splits.y_val[:32]))
    assert logs["response/computed"] == 1.0
    assert float(logs["response/nonfinite"]) == 0.0
    assert 0 < float(logs["response/response_grad_norm"]) < np.inf
    assert np.isfinite(float(logs["controller/val_loss"]))
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(weights, search.supernet.trainable_variables))
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(policy, search.controller.trainable_variables))
    # a derived child's text form round-trips and builds standalone
    child = search.space.random(np.random.default_rng(0))
    model = search.supernet.child_model(search.space.parse(search.space.to_string(child)))
    np.testing.assert_allclose(model(splits.x_val[:8], training=False),
                               search.supernet(splits.x_val[:8], child, training=False),
                               atol=1e-5)


def test_config_names_the_space():
    with pytest.raises(ValueError, match="space must be one of"):
        SearchConfig(space="nas").validate()
    with pytest.raises(ValueError, match="num_nodes must be >= 1"):
        SearchConfig(space="micro", num_nodes=0).validate()


@pytest.mark.parametrize("space", [MicroSpace(3, choices={"learning_rate": (0.01, 0.1)}),
                                   RNNCellSpace(4, choices={"learning_rate": (0.01, 0.1)})])
def test_of_child_rebuilds_a_space_for_the_text(space):
    child = space.random(np.random.default_rng(5))
    text = space.to_string(child)
    smallest = type(space).of_child(text)
    assert smallest.num_nodes == space.num_nodes
    assert smallest.to_string(smallest.parse(text)) == text


@pytest.mark.parametrize("space", [MicroSpace(2), RNNCellSpace(3)], ids=["micro", "rnn_cell"])
def test_found_child_from_text_is_the_supernets_child(splits, space):
    """tf-enas-train's model of a cell child's text has the supernet's child's layers: with
    the inherited weights copied in, it gives the supernet's outputs for that child."""
    if isinstance(space, MicroSpace):
        name, supernet = "micro", MicroSupernet(space, splits.input_shape, splits.num_classes,
                                                width=4, num_cells=1)
    else:
        name, supernet = "rnn_cell", RNNSupernet(space, splits.input_shape,
                                                 splits.num_classes, width=4)
    child = space.random(np.random.default_rng(1))
    model = found_child.child_model(space.to_string(child), splits.input_shape,
                                    splits.num_classes, width=4, space=name, num_cells=1)
    model.set_weights(supernet.child_model(child).get_weights())
    np.testing.assert_allclose(model(splits.x_val[:8], training=False),
                               supernet(splits.x_val[:8], child, training=False), atol=1e-5)
