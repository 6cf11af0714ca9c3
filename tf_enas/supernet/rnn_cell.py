"""ENAS's recurrent cell as a Keras RNN cell with shared weights, and its sequence supernet.

One step from input x_t and state h_{t−1} (width n), nodes 0..N−1 (cell_space.RNNCellSpace):

    node 0:  z = [x_t, h_{t−1}] K₀,       c = σ(z₁),  k₀ = c ⊙ f₀(z₂) + (1 − c) ⊙ h_{t−1}
    node i:  z = k_{j(i)} K_{i,j(i)},     c = σ(z₁),  k_i = c ⊙ f_i(z₂) + (1 − c) ⊙ k_{j(i)}
    h_t = mean of the loose ends (nodes no later node reads)

(z₁, z₂ the two halves of z, and σ(z₁ − 3) in place of σ(z₁): a fixed offset so that
a new cell starts by carrying its state (c ≈ 0.05, like an LSTM's forget-gate bias); with
σ(z₁) ≈ 0.5 every node halves the state and a 40-step sequence is forgotten — on MNIST-1D
the retrained cells stayed at chance (10%); f ∈ {tanh, relu, identity, sigmoid}; the (1 − c) terms are
ENAS's highway connections.) K_{i,j} is one weight per (node, earlier node) pair, shared by
every child, as in ENAS. The supernet selects k_{j(i)} by `tf.gather`, K_{i,j(i)} by a
one-hot contraction (a dense gradient) and
f_i by a one-hot mix of the four activations (exact: the other three get weight 0), so one
traced graph serves every child; the sequence is unrolled (fixed length).

`RNNSupernet` classifies a sequence from its states (or, sequence_output=True, gives
logits at every step: a character-level language model). `readout` says which states the
classifier reads: "last" (h_T), "mean" (the mean of h_1..h_T) or "flatten" (h_1..h_T
concatenated). `child_model(child)` wraps
the fixed cell in `keras.layers.RNN`.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tf_enas.cell_space import ACTIVATIONS, RNNCellSpace

READOUTS = ("last", "mean", "flatten")
READOUT = "flatten"  # the default readout of a classifier

_ACT = {"tanh": tf.tanh, "relu": tf.nn.relu, "identity": tf.identity, "sigmoid": tf.sigmoid}


@keras.saving.register_keras_serializable(package="tf_enas")
class NodeKernel(keras.layers.Layer):
    """K_{i,j} for j in `sources` (the supernet: every earlier node; a child: its one)."""

    def __init__(self, width, num_sources, **kwargs):
        super().__init__(**kwargs)
        self.width, self.num_sources = width, num_sources

    def build(self, input_shape=None):
        n = self.width
        limit = (6.0 / (3 * n)) ** 0.5  # Glorot-uniform of each (n, 2n) slice
        self.kernel = self.add_weight(shape=(self.num_sources, n, 2 * n), name="kernel",
                                      initializer=keras.initializers.RandomUniform(-limit,
                                                                                   limit))

    def call(self, h, source=0):
        # a one-hot contraction, not tf.gather: the gradient stays a dense tensor
        pick = tf.one_hot(source, self.num_sources, dtype=self.kernel.dtype)
        return h @ tf.tensordot(pick, self.kernel, 1)

    def get_config(self):
        return super().get_config() | {"width": self.width, "num_sources": self.num_sources}


CARRY_BIAS = 3.0


def _highway(z, prev, act):
    n = prev.shape[-1]
    c = tf.sigmoid(z[:, :n] - CARRY_BIAS)
    return c * act(z[:, n:]) + (1.0 - c) * prev


@keras.saving.register_keras_serializable(package="tf_enas")
class ENASCell(keras.layers.Layer):
    """ENAS's recurrent cell (a Keras RNN cell: state_size, call(x, states)).

    arc None: the supernet cell; use `step(x, h, inputs, acts)` with int32 tensors inputs
    [N] (node 0's entry unused) and acts [N]. arc {"inputs": [...], "acts": [...]} (plain
    ints): a fixed child cell, usable in keras.layers.RNN.
    """

    def __init__(self, num_nodes, width, arc=None, **kwargs):
        super().__init__(**kwargs)
        self.num_nodes, self.width = num_nodes, width
        self.arc = None if arc is None else {k: [int(a) for a in v] for k, v in arc.items()}
        self.state_size = width
        self.output_size = width
        self.input_kernel = keras.layers.Dense(2 * width, use_bias=False, name="input_kernel")
        self.node_kernels = [NodeKernel(width, i if arc is None else 1, name=f"node_{i}")
                             for i in range(1, num_nodes)]
        for k in self.node_kernels:
            setattr(self, k.name, k)

    def build(self, input_shape):
        self.input_kernel.build((None, input_shape[-1] + self.width))
        for k in self.node_kernels:
            k.build()
        self.built = True

    def step(self, x, h, inputs, acts):
        """h_t of the supernet cell for the child's inputs [N] and acts [N] (int32)."""
        onehot = tf.one_hot(acts, len(ACTIVATIONS), dtype=h.dtype)  # [N, 4]

        def act(i):
            return lambda z: tf.add_n([onehot[i, a] * _ACT[name](z)
                                       for a, name in enumerate(ACTIVATIONS)])

        nodes = [_highway(self.input_kernel(tf.concat([x, h], -1)), h, act(0))]
        for i in range(1, self.num_nodes):
            prev = tf.gather(tf.stack(nodes, 0), inputs[i])
            nodes.append(_highway(self.node_kernels[i - 1](prev, source=inputs[i]), prev, act(i)))
        used = tf.reduce_any(tf.equal(inputs[1:][None, :],
                                      tf.range(self.num_nodes)[:, None]), 1)
        mask = 1.0 - tf.cast(used, h.dtype)
        return tf.add_n([mask[i] * nodes[i] for i in range(self.num_nodes)]) / tf.reduce_sum(mask)

    def call(self, x, states, training=False):
        if self.arc is None:
            raise ValueError("the supernet cell needs the child: use step(x, h, inputs, acts)")
        h = states[0] if isinstance(states, (list, tuple)) else states
        inputs, acts = self.arc["inputs"], self.arc["acts"]
        nodes = [_highway(self.input_kernel(tf.concat([x, h], -1)), h,
                          _ACT[ACTIVATIONS[acts[0]]])]
        for i in range(1, self.num_nodes):
            prev = nodes[inputs[i]]
            nodes.append(_highway(self.node_kernels[i - 1](prev, source=0), prev,
                                  _ACT[ACTIVATIONS[acts[i]]]))
        used = set(inputs[1:])
        ends = [nodes[i] for i in range(self.num_nodes) if i not in used]
        out = tf.add_n(ends) / float(len(ends))
        return out, [out]

    def get_config(self):
        return super().get_config() | {"num_nodes": self.num_nodes, "width": self.width,
                                       "arc": self.arc}


class RNNSupernet(keras.Model):
    """Every child of an RNNCellSpace with shared weights: `supernet(x, child, training)`.

    Args:
      space: the RNNCellSpace.
      input_shape: per-example (length, features) (MNIST-1D as a sequence: (40, 1); a
        language model: (length, vocabulary) one-hot).
      num_classes: logits (classes, or the vocabulary for a language model).
      width: the cell's state size n.
      sequence_output: logits at every step [B, T, C] (language model) instead of from h_T.
      dropout: dropout on h before the output layer.
      readout: without sequence_output, what the output layer reads (READOUTS): "last"
        h_T, "mean" the mean of h_1..h_T, "flatten" h_1..h_T concatenated.
    """

    def __init__(self, space: RNNCellSpace, input_shape, num_classes, width=64,
                 sequence_output=False, dropout=0.0, readout=READOUT, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(space, RNNCellSpace):
            raise ValueError(f"RNNSupernet needs an RNNCellSpace, got {space!r}")
        self.example_shape = tuple(input_shape)
        if len(self.example_shape) != 2:
            raise ValueError(f"input_shape must be (length, features), got {input_shape}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        self.space, self.num_classes, self.width = space, num_classes, width
        self.sequence_output, self.dropout = sequence_output, dropout
        self.readout = readout
        self.cell = ENASCell(space.num_nodes, width, name="cell")
        self.drop = keras.layers.Dropout(dropout, name="dropout")
        self.head = keras.layers.Dense(num_classes, name="head")
        self._inputs = tf.constant([0] + list(space.input_index[1:]), tf.int32)
        self._acts = tf.constant(space.act_index, tf.int32)
        self.build((None, *self.example_shape))

    def build(self, input_shape):
        self.cell.build(input_shape)
        self.head.build((None, _head_width(self.width, self.example_shape[0], self.readout,
                                           self.sequence_output)))
        self.built = True

    def call(self, x, child, training=False, update_stats=True):
        """Logits of `child` (int32 vector) on x [B, T, F] (no batch statistics here:
        update_stats is accepted for the Supernet interface)."""
        child = tf.convert_to_tensor(child, tf.int32)
        inputs = tf.gather(child, self._inputs) * tf.concat(
            [[0], tf.ones([self.space.num_nodes - 1], tf.int32)], 0)
        acts = tf.gather(child, self._acts)
        h = tf.zeros((tf.shape(x)[0], self.width), x.dtype)
        outs = []
        for t in range(x.shape[1]):
            h = self.cell.step(x[:, t], h, inputs, acts)
            outs.append(h)
        out = _read(tf.stack(outs, 1), self.readout, self.sequence_output)
        if self.dropout:
            out = self.drop(out, training=training)
        return self.head(out)

    def child_model(self, child, inherit_weights: bool = True, width: int | None = None,
                    dropout: float | None = None, name: str = "child") -> keras.Model:
        """keras.layers.RNN over the fixed cell of `child`, then the output layer; with this
        supernet's weights (inherit_weights; width must be the supernet's) or fresh."""
        child = self.space.validate(child)
        width = width or self.width
        if inherit_weights and width != self.width:
            raise ValueError("inherit_weights needs width equal to the supernet's width")
        model = build_rnn_child(self.space, child, self.example_shape, self.num_classes, width,
                                self.sequence_output,
                                self.dropout if dropout is None else dropout, name,
                                self.readout)
        if inherit_weights:
            cell = model.get_layer("rnn").cell
            cell.input_kernel.set_weights(self.cell.input_kernel.get_weights())
            inputs, _ = self.space.cell_arrays(child)
            for i in range(1, self.space.num_nodes):
                k = self.cell.node_kernels[i - 1].kernel.numpy()[inputs[i]]
                cell.node_kernels[i - 1].kernel.assign(k[None])
            model.get_layer("head").set_weights(self.head.get_weights())
        return model


def _head_width(width, length, readout, sequence_output):
    return width * length if readout == "flatten" and not sequence_output else width


def _read(states, readout, sequence_output):
    """What the output layer reads of states [B, T, n]."""
    if sequence_output:
        return states
    if readout == "mean":
        return tf.reduce_mean(states, 1)
    if readout == "flatten":
        return tf.reshape(states, [-1, states.shape[1] * states.shape[2]])
    return states[:, -1]


def build_rnn_child(space: RNNCellSpace, child, input_shape, num_classes: int, width: int,
                    sequence_output: bool = False, dropout: float = 0.0,
                    name: str = "child", readout: str = READOUT) -> keras.Model:
    """keras.layers.RNN(ENASCell(arc of child)) → readout → Dropout → Dense, fresh
    weights."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    child = space.validate(child)
    inputs, acts = space.cell_arrays(child)
    arc = {"inputs": inputs.tolist(), "acts": acts.tolist()}
    inp = keras.Input(tuple(input_shape), name="input")
    h = keras.layers.RNN(ENASCell(space.num_nodes, width, arc, name="cell"),
                         return_sequences=sequence_output or readout != "last",
                         name="rnn")(inp)
    if not sequence_output and readout == "mean":
        h = keras.layers.GlobalAveragePooling1D(name="mean")(h)
    elif not sequence_output and readout == "flatten":
        h = keras.layers.Flatten(name="flatten")(h)
    if dropout:
        h = keras.layers.Dropout(dropout, name="dropout")(h)
    return keras.Model(inp, keras.layers.Dense(num_classes, name="head")(h), name=name)
