"""Recurrent cell supernet: HVP vs finite differences (float64, tf.function), one step vs an
independent NumPy transcription of ENAS's cell, child_model (keras.layers.RNN) equals the
supernet, no retracing across 20 children, a character-level language model learns."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.supernet.test_ops import float64, functional, relative_hvp_error  # noqa: F401
from tf_enas.cell_space import ACTIVATIONS, RNNCellSpace
from tf_enas.supernet.rnn_cell import CARRY_BIAS, READOUTS, RNNSupernet, build_rnn_child
from tests.supernet.traces import traces_over_twenty_children

NP_ACT = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0), "identity": lambda z: z,
          "sigmoid": lambda z: 1 / (1 + np.exp(-z))}


def numpy_step(x, h, k0, node_kernels, inputs, acts):
    """ENAS's cell, written out: node 0 from [x, h], node i from node inputs[i], highway
    (gate offset by −CARRY_BIAS)."""
    sig = lambda z: NP_ACT["sigmoid"](z - CARRY_BIAS)  # noqa: E731
    n = h.shape[-1]
    z = np.concatenate([x, h], -1) @ k0
    c = sig(z[:, :n])
    nodes = [c * NP_ACT[ACTIVATIONS[acts[0]]](z[:, n:]) + (1 - c) * h]
    for i in range(1, len(acts)):
        prev = nodes[inputs[i]]
        z = prev @ node_kernels[i - 1][inputs[i]]
        c = sig(z[:, :n])
        nodes.append(c * NP_ACT[ACTIVATIONS[acts[i]]](z[:, n:]) + (1 - c) * prev)
    ends = [nodes[i] for i in range(len(acts)) if i not in set(inputs[1:])]
    return sum(ends) / len(ends)


def test_space_text_form():
    space = RNNCellSpace(4, choices={"weight_decay": (0.0, 1e-4)})
    assert [d.num_values for d in space.decisions] == [4, 1, 4, 2, 4, 3, 4, 2]
    child = space.parse("tanh | 0:relu | 0:sigmoid | 2:identity ; weight_decay=0.0001")
    assert space.to_string(child) == "tanh | 0:relu | 0:sigmoid | 2:identity ; weight_decay=0.0001"
    assert space.loose_ends(child) == [1, 3]
    with pytest.raises(ValueError, match="node 2"):
        space.parse("tanh | 0:relu | 2:sigmoid | 2:identity ; weight_decay=0")


def test_step_matches_numpy_transcription():
    space = RNNCellSpace(4)
    net = RNNSupernet(space, (5, 3), 2, width=6)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3)).astype(np.float32)
    h = rng.normal(size=(7, 6)).astype(np.float32)
    k0 = net.cell.input_kernel.kernel.numpy()
    kernels = [k.kernel.numpy() for k in net.cell.node_kernels]
    for _ in range(6):
        child = space.random(rng)
        inputs, acts = space.cell_arrays(child)
        got = net.cell.step(tf.constant(x), tf.constant(h), tf.constant(np.maximum(inputs, 0)),
                            tf.constant(acts))
        np.testing.assert_allclose(got, numpy_step(x, h, k0, kernels, inputs, acts),
                                   atol=1e-5)


@pytest.mark.parametrize("text", ["tanh | 0:relu | 0:sigmoid", "sigmoid | 0:identity | 1:tanh",
                                  "relu | 0:tanh | 1:relu"])
def test_hvp_matches_finite_differences(float64, text):
    """Through every activation, the gathered kernels and the recurrence (3 steps)."""
    space = RNNCellSpace(3)
    net = RNNSupernet(space, (3, 2), 3, width=3)
    x = tf.constant(np.random.default_rng(1).normal(size=(4, 3, 2)))
    loss, params = functional(net, x, child=tf.constant(space.parse(text)))
    assert relative_hvp_error(loss, params) < 1e-6


@pytest.mark.parametrize("sequence_output,readout", [
    (False, "last"), (False, "mean"), (False, "flatten"), (True, "flatten")])
def test_child_model_with_inherited_weights_equals_supernet(sequence_output, readout):
    space = RNNCellSpace(5)
    keras.utils.set_random_seed(0)
    net = RNNSupernet(space, (12, 2), 4, width=8, sequence_output=sequence_output,
                      readout=readout)
    head_in = 8 * 12 if readout == "flatten" and not sequence_output else 8
    assert net.head.kernel.shape == (head_in, 4)
    x = tf.random.normal((6, 12, 2))
    rng = np.random.default_rng(2)
    for _ in range(4):
        child = space.random(rng)
        model = net.child_model(child)
        np.testing.assert_allclose(model(x), net(x, child), atol=1e-5)
        kernels = sum(int(np.prod(k.kernel.shape[1:])) for k in net.cell.node_kernels)
        assert model.count_params() == (net.cell.input_kernel.count_params() + kernels
                                        + net.head.count_params())


def test_unknown_readout_is_refused():
    space = RNNCellSpace(3)
    with pytest.raises(ValueError, match="readout"):
        RNNSupernet(space, (6, 1), 3, width=4, readout="max")
    with pytest.raises(ValueError, match="readout"):
        build_rnn_child(space, space.random(np.random.default_rng(0)), (6, 1), 3, 4,
                        readout="max")
    assert set(READOUTS) == {"last", "mean", "flatten"}


def test_twenty_children_one_trace():
    space = RNNCellSpace(4)
    net = RNNSupernet(space, (6, 1), 3, width=4)
    assert traces_over_twenty_children(net, space, tf.random.normal((4, 6, 1))) == 1


def tiny_text(n=600, seed=0):
    """A small generated text: words from a fixed list, so the next character is mostly
    predictable inside a word."""
    words = ["enas", "cell", "node", "relu", "tanh", "gate"]
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(words, n // 5))[:n]


def test_char_language_model_learns_the_tiny_text():
    """Per-step logits (sequence_output): a fixed child trained by Adam on the supernet's
    weights gets 20% below the unigram entropy of the text (the best a model ignoring the
    past can do)."""
    text = tiny_text()
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text])
    T = 8
    starts = np.arange(0, len(ids) - T - 1, 3)
    x = np.eye(len(vocab), dtype=np.float32)[np.stack([ids[s:s + T] for s in starts])]
    y = np.stack([ids[s + 1:s + T + 1] for s in starts]).astype(np.int32)
    freq = np.bincount(ids, minlength=len(vocab)) / len(ids)
    unigram = -np.sum(freq * np.log(freq + 1e-12))
    space = RNNCellSpace(3)
    keras.utils.set_random_seed(0)
    net = RNNSupernet(space, (T, len(vocab)), len(vocab), width=16, sequence_output=True)
    child = tf.constant(space.parse("tanh | 0:relu | 0:tanh"))
    opt = keras.optimizers.Adam(0.02)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                y, net(x, child, training=True)))
        opt.apply_gradients(zip(tape.gradient(loss, net.trainable_variables),
                                net.trainable_variables))
        return loss

    for _ in range(40):
        loss = float(step(x, y))
    assert loss < 0.8 * unigram, (loss, unigram)
