"""The micro (convolutional cell) supernet: ENAS's normal and reduction cells, shared weights.

    s₀ = s₁ = Stem(input)
    stage 0: num_cells normal cells; then `reductions` times (ENAS: twice): a reduction
    cell, num_cells normal cells
    cell(s₀, s₁): n_i = op_{i,0}(in_{i,0}) + op_{i,1}(in_{i,1}),  in ∈ {s₀, s₁, n_0..n_{i−1}}
                  output = mean of the loose ends (nodes no later node reads)
    next cell's inputs: (s₁, output);  logits = Head(last output)

Before a reduction cell both inputs are halved in length (height and width) and doubled in
width by `Reduce` (avg-pool 2 → 1×1 conv → BN; ENAS's factorized reduction, simplified);
the reduction cell's ops then run at stride 1, as in ENAS. Ops (ENAS's micro set):
identity, sepconv3/5 = BN(SepConv_k(ReLU(x))), avgpool3, maxpool3 (stride 1, "same",
no weights). Each (node, input slot, op) has its own weights, shared by every child (ENAS
further splits sepconv weights by the chosen input; here they are shared across inputs).

A child (int32 vector, see cell_space.MicroSpace) selects inputs by `tf.gather` on the
stacked candidates and ops by `MixedOp` (selected kernels and a one-hot mix, no branches:
tracing 20–50 `tf.switch_case`s and their second derivatives took minutes on 2 cores),
so one traced graph serves every child.
`child_model(child)` builds a functional Keras model of exactly that child from the same
layers (`Cell` with a fixed architecture builds only the chosen ops).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_enas.cell_space import CELLS, MICRO_OPS, MicroSpace
from tf_enas.supernet.macro import Head, Stem
from tf_enas.supernet.ops import BatchNorm, MaxPool

_CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D}
_SEPCONV = {1: keras.layers.SeparableConv1D, 2: keras.layers.SeparableConv2D}
_AVGPOOL = {1: keras.layers.AveragePooling1D, 2: keras.layers.AveragePooling2D}


@keras.saving.register_keras_serializable(package="tf_enas")
class SepConvOp(keras.layers.Layer):
    """ENAS micro sepconv{k}: y = BN(SepConv_k(ReLU(x))), width in = width out."""

    def __init__(self, width, kernel_size, rank=1, **kwargs):
        super().__init__(**kwargs)
        self.width, self.kernel_size, self.rank = width, kernel_size, rank
        self.conv = _SEPCONV[rank](width, kernel_size, padding="same", use_bias=False,
                                   name="conv")
        self.bn = BatchNorm(name="bn")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(tuple(input_shape[:-1]) + (self.width,))

    def call(self, x, training=False, update_stats=True):
        return self.bn(self.conv(tf.nn.relu(x)), training=training, update_stats=update_stats)

    def get_config(self):
        return super().get_config() | {"width": self.width, "kernel_size": self.kernel_size,
                                       "rank": self.rank}


@keras.saving.register_keras_serializable(package="tf_enas")
class PlainOp(keras.layers.Layer):
    """A weightless op: identity, avgpool3 or maxpool3 (stride 1, "same")."""

    def __init__(self, op, rank=1, **kwargs):
        super().__init__(**kwargs)
        if op not in ("identity", "avgpool3", "maxpool3"):
            raise ValueError(f"unknown weightless op {op!r}")
        self.op, self.rank = op, rank
        self.pool = (MaxPool(3, rank, name="pool") if op == "maxpool3" else
                     _AVGPOOL[rank](3, strides=1, padding="same", name="pool")
                     if op == "avgpool3" else None)

    def build(self, input_shape):
        if self.pool is not None:
            self.pool.build(input_shape)
        self.built = True

    def call(self, x, training=False, update_stats=True):
        return x if self.pool is None else self.pool(x)

    def get_config(self):
        return super().get_config() | {"op": self.op, "rank": self.rank}


@keras.saving.register_keras_serializable(package="tf_enas")
class DropPath(keras.layers.Layer):
    """NASNet's drop-path (ScheduledDropPath; ENAS and DARTS retrain with it): in training,
    y = x · b / (1 − r), b ~ Bernoulli(1 − r) per example, so E[y] = x; y = x in inference.
    The rate r is a variable that `DropPathSchedule` raises from 0 to `max_rate`."""

    def __init__(self, max_rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= max_rate < 1.0:
            raise ValueError(f"drop-path rate must be in [0, 1), got {max_rate}")
        self.max_rate, self.seed = float(max_rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # schedule state, not a weight (count_params and the saved weights leave it out)
        self.rate = tf.Variable(self.max_rate, trainable=False, name="rate")

    def call(self, x, training=False):
        if not training:
            return x
        keep = 1.0 - tf.cast(self.rate, x.dtype)
        u = keras.random.uniform([tf.shape(x)[0]] + [1] * (len(x.shape) - 1), dtype=x.dtype,
                                 seed=self.seed_generator)
        return x * tf.floor(keep + u) / keep

    def get_config(self):
        return super().get_config() | {"max_rate": self.max_rate, "seed": self.seed}


class DropPathSchedule(keras.callbacks.Callback):
    """Sets every child Cell's DropPath rate to max_rate · epoch / epochs at the start of
    each epoch (DARTS's linear schedule; NASNet's ScheduledDropPath)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        for layer in self.model.layers:
            if isinstance(layer, Cell) and layer.drop is not None:
                layer.drop.rate.assign(layer.drop.max_rate * epoch / self.epochs)


def make_micro_op(name: str, width: int, rank: int, layer_name: str | None = None):
    """The micro op `name` (one of MICRO_OPS)."""
    if name in ("sepconv3", "sepconv5"):
        return SepConvOp(width, int(name[-1]), rank, name=layer_name or name)
    return PlainOp(name, rank, name=layer_name or name)


@keras.saving.register_keras_serializable(package="tf_enas")
class Reduce(keras.layers.Layer):
    """Halves every spatial axis and maps to `width` channels: BN(Conv_1(AvgPool_2(x)))."""

    def __init__(self, width, rank=1, **kwargs):
        super().__init__(**kwargs)
        self.width, self.rank = width, rank
        self.pool = _AVGPOOL[rank](2, padding="same", name="pool")
        self.conv = _CONV[rank](width, 1, use_bias=False, name="conv")
        self.bn = BatchNorm(name="bn")

    def build(self, input_shape):
        shape = (input_shape[0], *[(s + 1) // 2 for s in input_shape[1:-1]], input_shape[-1])
        self.conv.build(shape)
        self.bn.build(shape[:-1] + (self.width,))

    def call(self, x, training=False, update_stats=True):
        return self.bn(self.conv(self.pool(x)), training=training, update_stats=update_stats)

    def get_config(self):
        return super().get_config() | {"width": self.width, "rank": self.rank}


def _op_name(node, slot, op):
    return f"node{node}_{slot}_{op}"


def _separable(x, depthwise, pointwise):
    """Keras's SeparableConv{1,2}D ("same", stride 1, no bias) with the given kernels."""
    if len(x.shape) == 3:
        return tf.nn.separable_conv2d(x[:, None], depthwise[None], pointwise[None],
                                      [1, 1, 1, 1], "SAME")[:, 0]
    return tf.nn.separable_conv2d(x, depthwise, pointwise, [1, 1, 1, 1], "SAME")


@keras.saving.register_keras_serializable(package="tf_enas")
class MixedOp(keras.layers.Layer):
    """All MICRO_OPS of one (node, slot) of the supernet; `call(x, op)` is the op `op`.

    No branching: sepconv3 and sepconv5 run as one separable conv whose kernels (sepconv3's
    depthwise kernel zero-padded to 5 taps, the same function under "same" padding), BN
    scale/shift and BN moments are those of the chosen one; the weightless ops are cheap,
    and the output mixes the four results by the op's one-hot vector (exact: the others
    get weight 0, and gradient 0). Only the chosen sepconv's moving moments are updated.
    The weights live in two SepConvOp sublayers, which a child model copies.
    """

    def __init__(self, width, rank=1, **kwargs):
        super().__init__(**kwargs)
        self.width, self.rank = width, rank
        self.sep3 = SepConvOp(width, 3, rank, name="sepconv3")
        self.sep5 = SepConvOp(width, 5, rank, name="sepconv5")
        self.avg = PlainOp("avgpool3", rank, name="avgpool3")
        self.max = PlainOp("maxpool3", rank, name="maxpool3")

    def build(self, input_shape):
        for op in (self.sep3, self.sep5, self.avg, self.max):
            op.build(input_shape)
        self.built = True

    def sepconv(self, index):
        """The SepConvOp of MICRO_OPS index 1 or 2."""
        return {1: self.sep3, 2: self.sep5}[index]

    def call(self, x, op, training=False, update_stats=True):
        is3 = tf.equal(op, 1)
        pad = [[1, 1]] * self.rank + [[0, 0], [0, 0]]
        depthwise = tf.where(is3, tf.pad(self.sep3.conv.depthwise_kernel, pad),
                             self.sep5.conv.depthwise_kernel)
        pointwise = tf.where(is3, self.sep3.conv.pointwise_kernel,
                             self.sep5.conv.pointwise_kernel)
        y = _separable(tf.nn.relu(x), depthwise, pointwise)
        b3, b5 = self.sep3.bn, self.sep5.bn
        if training:
            axes = list(range(len(y.shape) - 1))
            mean = tf.reduce_mean(y, axes)
            var = tf.reduce_mean(tf.square(y - mean), axes)
            if update_stats:
                for bn, chosen in ((b3, is3), (b5, tf.equal(op, 2))):
                    bn.update_moving(mean, var, where=chosen)
        else:
            mean = tf.where(is3, b3.moving_mean, b5.moving_mean)
            var = tf.where(is3, b3.moving_variance, b5.moving_variance)
        gamma, beta = tf.where(is3, b3.gamma, b5.gamma), tf.where(is3, b3.beta, b5.beta)
        y = (y - mean) * tf.math.rsqrt(var + b3.epsilon) * gamma + beta
        onehot = tf.one_hot(op, len(MICRO_OPS), dtype=x.dtype)
        return (onehot[0] * x + (onehot[1] + onehot[2]) * y + onehot[3] * self.avg(x)
                + onehot[4] * self.max(x))

    def get_config(self):
        return super().get_config() | {"width": self.width, "rank": self.rank}


@keras.saving.register_keras_serializable(package="tf_enas")
class Cell(keras.layers.Layer):
    """One ENAS micro cell on inputs [s₀, s₁] (same shape) → same shape.

    arc None: the supernet cell (a MixedOp per node and slot; call takes `indices` [B, 2]
    and `ops` [B, 2] int32 tensors). arc {"inputs": [[i0, i1], ...], "ops": [[op0, op1],
    ...]} (plain ints): a fixed child cell that builds only its ops.
    """

    def __init__(self, num_nodes, width, rank=1, arc=None, drop_path=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_nodes, self.width, self.rank = num_nodes, width, rank
        if drop_path and arc is None:
            raise ValueError("drop-path is for child cells (a fixed arc), not the supernet")
        self.drop_path = float(drop_path)
        self.drop = DropPath(drop_path, name="drop_path") if drop_path else None
        self.arc = None if arc is None else {k: [[int(a) for a in r] for r in v]
                                             for k, v in arc.items()}
        self.ops = {}
        for i in range(num_nodes):
            for s in range(2):
                if arc is None:
                    name = f"node{i}_{s}"
                    self.ops[name] = MixedOp(width, rank, name=name)
                else:
                    o = self.arc["ops"][i][s]
                    name = _op_name(i, s, o)
                    self.ops[name] = make_micro_op(MICRO_OPS[o], width, rank, name)
                setattr(self, name, self.ops[name])  # tracked by name

    def build(self, input_shape):
        shape = tuple(input_shape[0])
        for op in self.ops.values():
            op.build(shape)
        self.built = True

    def call(self, inputs, indices=None, ops=None, training=False, update_stats=True):
        nodes = list(inputs)
        kw = dict(training=training, update_stats=update_stats)
        if self.arc is not None:
            for i in range(self.num_nodes):
                nodes.append(tf.add_n([self._child_op(i, s, nodes, training, kw)
                                       for s in range(2)]))
            used = {j for row in self.arc["inputs"] for j in row}
            ends = [nodes[i + 2] for i in range(self.num_nodes) if i + 2 not in used]
            return tf.add_n(ends) / float(len(ends))
        for i in range(self.num_nodes):
            stacked = tf.stack(nodes, 0)
            nodes.append(tf.add_n([self.ops[f"node{i}_{s}"](
                tf.gather(stacked, indices[i, s]), ops[i, s], **kw) for s in range(2)]))
        # loose ends: node i is used when some later node reads index i + 2
        reads = tf.reshape(indices, [-1])
        used = tf.reduce_any(tf.equal(reads[None, :], tf.range(2, self.num_nodes + 2)[:, None]),
                             1)
        mask = 1.0 - tf.cast(used, nodes[0].dtype)  # [B]
        out = tf.add_n([mask[i] * nodes[i + 2] for i in range(self.num_nodes)])
        return out / tf.reduce_sum(mask)

    def _child_op(self, node, slot, nodes, training, kw):
        """A child cell's op output, its path dropped (DropPath) unless it is identity."""
        o = self.arc["ops"][node][slot]
        y = self.ops[_op_name(node, slot, o)](nodes[self.arc["inputs"][node][slot]], **kw)
        return y if self.drop is None or MICRO_OPS[o] == "identity" else self.drop(
            y, training=training)

    def get_config(self):
        return super().get_config() | {"num_nodes": self.num_nodes, "width": self.width,
                                       "rank": self.rank, "arc": self.arc,
                                       "drop_path": self.drop_path}


MIN_POSITIONS = 16


def default_reductions(input_shape) -> int:
    """ENAS's 2 reductions, or 1 when 2 would leave fewer than MIN_POSITIONS positions in
    the last stage: a 32×32 image keeps 8×8 = 64 after 2, but an MNIST-1D sequence of
    length 40 only 10 (one MNIST-1D child retrained: 99.4% test at width 32 with 1
    reduction, 49k parameters; 98.7% at width 24 with 2, 120k)."""
    spatial = [int(s) for s in tuple(input_shape)[:-1]]
    return 2 if int(np.prod([(s + 3) // 4 for s in spatial])) >= MIN_POSITIONS else 1


def cell_plan(num_cells: int, reductions: int = 2) -> list[str]:
    """The stacked cells: num_cells normal, then `reductions` times (reduce, num_cells
    normal); ENAS has 2 reductions."""
    return ["normal"] * num_cells + (["reduce"] + ["normal"] * num_cells) * reductions


def _arc(space: MicroSpace, child, cell: str) -> dict:
    idx, ops = space.cell_arrays(child, cell)
    return {"inputs": idx.tolist(), "ops": ops.tolist()}


class _Stack:
    """The cell stack of one architecture (shared by the supernet and child models):
    builds Stem, per cell (Reduce pair before a reduction cell) a Cell, Head."""

    def __init__(self, num_nodes, num_cells, width, rank, num_classes, dropout, arcs=None,
                 reductions=2, drop_path=0.0):
        self.stem = Stem(width, rank, name="stem")
        self.cells, self.reduces = [], {}
        w = width
        self.kinds = cell_plan(num_cells, reductions)
        for c, kind in enumerate(self.kinds):
            if kind == "reduce":
                w *= 2
                self.reduces[c] = (Reduce(w, rank, name=f"reduce_{c}_0"),
                                   Reduce(w, rank, name=f"reduce_{c}_1"))
            self.cells.append(Cell(num_nodes, w, rank, None if arcs is None else arcs[kind],
                                   drop_path, name=f"cell_{c}"))
        self.head = Head(num_classes, rank, dropout, name="head")

    def apply(self, x, cell_call, training, update_stats=True):
        kw = dict(training=training, update_stats=update_stats)
        s0 = s1 = self.stem(x, **kw)
        for c, cell in enumerate(self.cells):
            if c in self.reduces:
                r0, r1 = self.reduces[c]
                s0, s1 = r0(s0, **kw), r1(s1, **kw)
            s0, s1 = s1, cell_call(cell, self.kinds[c], [s0, s1], kw)
        return self.head(s1, training=training)


class MicroSupernet(keras.Model):
    """Every child of a MicroSpace with shared weights: `supernet(x, child, training)`.

    Args:
      space: the MicroSpace.
      input_shape: per-example shape, (length, channels) or (height, width, channels).
      num_classes: output logits.
      width: channels of the first stage (doubled at each reduction).
      num_cells: normal cells per stage.
      dropout: head dropout.
      reductions: reduction cells (stages − 1; ENAS: 2); None: default_reductions of the
        input shape (2, or 1 for short inputs such as MNIST-1D's length 40).
    """

    def __init__(self, space: MicroSpace, input_shape, num_classes, width=16, num_cells=1,
                 dropout=0.0, reductions=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(space, MicroSpace):
            raise ValueError(f"MicroSupernet needs a MicroSpace, got {space!r}")
        if num_cells < 1:
            raise ValueError(f"num_cells must be >= 1, got {num_cells}")
        self.space, self.num_classes, self.width = space, num_classes, width
        self.num_cells, self.dropout, self.reductions = num_cells, dropout, reductions
        self.example_shape = tuple(input_shape)
        self.rank = len(self.example_shape) - 1
        if self.rank not in (1, 2):
            raise ValueError(f"input_shape must be (length, channels) or (height, width, "
                             f"channels), got {input_shape}")
        if reductions is None:
            self.reductions = reductions = default_reductions(self.example_shape)
        self._stack = _Stack(space.num_nodes, num_cells, width, self.rank, num_classes, dropout,
                             reductions=reductions)
        self.stem, self.head = self._stack.stem, self._stack.head
        self.cells = self._stack.cells
        for c, cell in enumerate(self.cells):  # tracked by name for tf.train.Checkpoint
            setattr(self, f"cell_{c}", cell)
        for c, (r0, r1) in self._stack.reduces.items():
            setattr(self, f"reduce_{c}_0", r0)
            setattr(self, f"reduce_{c}_1", r1)
        k = {cell: np.array([space.node_index[cell, i] for i in range(space.num_nodes)])
             for cell in CELLS}
        self._index_pos = {c: tf.constant(v[:, :2], tf.int32) for c, v in k.items()}
        self._op_pos = {c: tf.constant(v[:, 2:], tf.int32) for c, v in k.items()}
        self.build((None, *self.example_shape))

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.stem.build(shape)
        shape = shape[:-1] + (self.width,)
        for c, cell in enumerate(self.cells):
            if c in self._stack.reduces:
                for r in self._stack.reduces[c]:
                    r.build(shape)
                shape = (shape[0], *[(s + 1) // 2 for s in shape[1:-1]], cell.width)
            cell.build([shape, shape])
        self.head.build(shape)
        self.built = True

    def call(self, x, child, training=False, update_stats=True):
        """Logits of `child` (int32 vector) on x; training/update_stats as in Supernet."""
        child = tf.convert_to_tensor(child, tf.int32)

        def cell_call(cell, kind, inputs, kw):
            return cell(inputs, tf.gather(child, self._index_pos[kind]),
                        tf.gather(child, self._op_pos[kind]), **kw)

        return self._stack.apply(x, cell_call, training, update_stats)

    def child_model(self, child, inherit_weights: bool = True, width: int | None = None,
                    dropout: float | None = None, name: str = "child",
                    num_cells: int | None = None, drop_path: float = 0.0) -> keras.Model:
        """A standalone functional Keras model of exactly `child` (only its ops), with this
        supernet's weights (inherit_weights; width and num_cells must then be the
        supernet's) or fresh; num_cells (default the supernet's) stacks the found cells
        deeper; drop_path: DropPath's max_rate on every op but identity (retraining)."""
        child = self.space.validate(child)
        width = width or self.width
        num_cells = num_cells or self.num_cells
        if inherit_weights and (width, num_cells) != (self.width, self.num_cells):
            raise ValueError("inherit_weights needs the supernet's width and num_cells")
        model = build_micro_child(self.space, child, self.example_shape, self.num_classes,
                                  width, num_cells,
                                  self.dropout if dropout is None else dropout, name,
                                  self.reductions, drop_path)
        if inherit_weights:
            for layer in [self.stem, self.head] + [r for pair in self._stack.reduces.values()
                                                   for r in pair]:
                model.get_layer(layer.name).set_weights(layer.get_weights())
            for cell in self.cells:
                mine = model.get_layer(cell.name)
                for i, row in enumerate(mine.arc["ops"]):
                    for slot, o in enumerate(row):
                        if MICRO_OPS[o].startswith("sepconv"):
                            mine.ops[_op_name(i, slot, o)].set_weights(
                                cell.ops[f"node{i}_{slot}"].sepconv(o).get_weights())
        return model


def build_micro_child(space: MicroSpace, child, input_shape, num_classes: int, width: int,
                      num_cells: int = 1, dropout: float = 0.0, name: str = "child",
                      reductions: int | None = None, drop_path: float = 0.0) -> keras.Model:
    """Functional Keras model of a micro `child` with fresh weights (reductions None:
    default_reductions(input_shape), as MicroSupernet; drop_path: DropPath's max_rate)."""
    child = space.validate(child)
    if reductions is None:
        reductions = default_reductions(input_shape)
    rank = len(input_shape) - 1
    arcs = {cell: _arc(space, child, cell) for cell in CELLS}
    stack = _Stack(space.num_nodes, num_cells, width, rank, num_classes, dropout, arcs,
                   reductions, drop_path)
    inp = keras.Input(tuple(input_shape), name="input")
    out = stack.apply(inp, lambda cell, kind, inputs, kw: cell(inputs, training=kw["training"]),
                      None)
    return keras.Model(inp, out, name=name)
