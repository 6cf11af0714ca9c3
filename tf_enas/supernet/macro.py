"""The macro supernet: one weight set per op per layer, shared by every child.

    x₀ = Stem(input);  x_i = BN_i(op_{a_i}(x_{i−1}) + Σ_{j<i} s_ij x_j);  logits = Head(x_{L−1})

with x_{-1} = x₀ for the first layer and a stride-2 average pool of every stored output
after each reduction layer (ENAS's pool layers, at L//3 − 1 and 2·L//3 − 1). A child
(int32 vector, see space.py) picks a_i with `tf.switch_case` and each s_ij with a `tf.cond`
that adds x_j or passes the sum on (no work for a skip that is off), inside one traced
graph, so sampling a new child never retraces.

`child_model(child)` builds a standalone functional Keras model of that child from the
same layers (ops, BatchNorm, stem, head), with or without the supernet's weights.
"""
from __future__ import annotations

import functools

import keras
import tensorflow as tf

from tf_enas.space import SearchSpace
from tf_enas.supernet.ops import (BatchNorm, PoolOp, make_op, moments, op_kernel_paths,
                                  to_float32)

_CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D}
_AVGPOOL = {1: keras.layers.AveragePooling1D, 2: keras.layers.AveragePooling2D}
_GAP = {1: keras.layers.GlobalAveragePooling1D, 2: keras.layers.GlobalAveragePooling2D}


def reduction_layers(num_layers: int) -> tuple[int, ...]:
    """Layers after which every stored output is pooled by 2 (ENAS's pool_layers)."""
    d = num_layers // 3
    return tuple(sorted({d - 1, 2 * d - 1} - {-1})) if d else ()


def kernel_paths(num_layers: int, ops) -> tuple:
    """The paths below the supernet of its kernels, in `trainable_variables` order, without
    building it: the stem's convolution, each layer's ops' kernels, the head's dense."""
    return ("stem/conv/kernel", *(f"layer_{i}/{op}/{k}" for i in range(num_layers)
                                  for op in ops for k in op_kernel_paths(op)),
            "head/dense/kernel")


@keras.saving.register_keras_serializable(package="tf_enas")
class Stem(keras.layers.Layer):
    """x₀ = BN(Conv_3(input)), to `width` channels."""

    def __init__(self, width, rank=1, **kwargs):
        super().__init__(**kwargs)
        self.width, self.rank = width, rank
        self.conv = _CONV[rank](width, 3, padding="same", use_bias=False, name="conv")
        self.bn = BatchNorm(name="bn")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(tuple(input_shape[:-1]) + (self.width,))

    def call(self, x, training=False, update_stats=True):
        return self.bn(self.conv(x), training=training, update_stats=update_stats)

    def get_config(self):
        return super().get_config() | {"width": self.width, "rank": self.rank}


@keras.saving.register_keras_serializable(package="tf_enas")
class Head(keras.layers.Layer):
    """logits = Dense(Dropout(GlobalAvgPool(ReLU(x))))."""

    def __init__(self, num_classes, rank=1, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.rank, self.dropout_rate = num_classes, rank, dropout
        self.pool = _GAP[rank](name="pool")
        self.dropout = keras.layers.Dropout(dropout, name="dropout")
        self.dense = keras.layers.Dense(num_classes, name="dense")

    def build(self, input_shape):
        self.dense.build((input_shape[0], input_shape[-1]))

    def call(self, x, training=False):
        h = self.pool(tf.nn.relu(x))
        if self.dropout_rate:
            h = self.dropout(h, training=training)
        return self.dense(h)

    def get_config(self):
        return super().get_config() | {"num_classes": self.num_classes, "rank": self.rank,
                                       "dropout": self.dropout_rate}


@keras.saving.register_keras_serializable(package="tf_enas")
class ChildLayer(keras.layers.Layer):
    """One layer of a fixed child: x_i = BN(op(x_{i−1}) + Σ skips); inputs [x, *skips]."""

    def __init__(self, op, width, rank=1, **kwargs):
        super().__init__(**kwargs)
        self.op_name, self.width, self.rank = op, width, rank
        self.op = make_op(op, width, rank)
        self.bn = BatchNorm(name="bn")

    def build(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape
        self.op.build(shape)
        self.bn.build(shape)

    def call(self, inputs, training=False):
        inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        y = self.op(inputs[0], training=training)
        for skip in inputs[1:]:
            y = y + skip
        return self.bn(y, training=training)

    def get_config(self):
        return super().get_config() | {"op": self.op_name, "width": self.width,
                                       "rank": self.rank}


def _update_moving(bn, mean, var):
    """A switch_case branch: bn's moving moments move towards (mean, var)."""
    bn.update_moving(mean, var)
    return tf.constant(0)


class SupernetLayer(keras.layers.Layer):
    """Searched layer i: all ops with their own weights; the child's op runs by switch_case.

    Each op is post(ReLU(BN(pre(x)))) (ops.py): only `pre` (the convolution) and `post`
    (the pooling, if any) are switched; the chosen op's BN runs outside the switch with
    its γ, β and moving moments gathered by the op index. So every batch-norm moment
    (all-reduced under a tf.distribute strategy) sits outside control flow, and the switch's
    gradient carries only the convolutions' intermediates. The moving moments of the chosen
    op move in a third switch_case (assignments of the moments computed before it).
    """

    def __init__(self, ops, width, rank=1, **kwargs):
        super().__init__(**kwargs)
        self.ops = [make_op(o, width, rank) for o in ops]
        for op in self.ops:  # attributes, so that tf.train.Checkpoint tracks them by name
            setattr(self, f"op_{op.name}", op)
        self.bn = BatchNorm(name="bn")
        # the distinct post-BN functions (convolutions: identity, pools: their pooling)
        keys = [op.name if isinstance(op, PoolOp) else "" for op in self.ops]
        distinct = list(dict.fromkeys(keys))
        self._posts = ([] if distinct == [""] else
                       [self.ops[keys.index(k)].post for k in distinct])
        self._post_index = tf.constant([distinct.index(k) for k in keys], tf.int32)

    def build(self, input_shape):
        for op in self.ops:
            op.build(input_shape)
        self.bn.build(input_shape)

    def call(self, x, previous, op_index, skips, training=False, update_stats=True):
        """x_i from x = x_{i−1}, `previous` = [x_0 … x_{i−1}], the chosen op's index and
        `skips` (one bool scalar s_ij per previous output)."""
        z = tf.switch_case(op_index, [functools.partial(op.pre, x) for op in self.ops])
        y = tf.nn.relu(self._op_bn(z, op_index, training, update_stats))
        if len(self._posts) > 1:
            y = tf.switch_case(tf.gather(self._post_index, op_index),
                               [functools.partial(f, y) for f in self._posts])
        elif self._posts:
            y = self._posts[0](y)
        for on, x_j in zip(skips, previous):
            y = tf.cond(on, functools.partial(tf.add, y, x_j), functools.partial(tf.identity, y))
        return self.bn(y, training=training, update_stats=update_stats)

    def _op_bn(self, z, op_index, training, update_stats):
        """BN of the chosen op (op_index) on z: its γ, β and moving moments by gather."""
        bns = [op.bn for op in self.ops]
        pick = lambda name: tf.gather(tf.stack([getattr(b, name).value for b in bns]),
                                      op_index)
        if training:
            mean, var = moments(z)
            if update_stats:  # only the chosen op's moving moments move
                tf.switch_case(op_index, [functools.partial(_update_moving, bn, mean, var)
                                          for bn in bns])
        else:
            mean, var = pick("moving_mean"), pick("moving_variance")
        eps = bns[0].epsilon
        return (z - mean) * tf.math.rsqrt(var + eps) * pick("gamma") + pick("beta")


class Supernet(keras.Model):
    """All children of `space` with shared weights: `supernet(x, child, training)`.

    Args:
      space: the SearchSpace (its architecture part).
      input_shape: per-example shape, (length, channels) or (height, width, channels).
      num_classes: output logits.
      width: channels of every layer.
      dropout: head dropout rate.
    """

    def __init__(self, space: SearchSpace, input_shape, num_classes, width=64, dropout=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        if space.num_layers < 1:
            raise ValueError("a supernet needs a space with at least one layer")
        self.space, self.num_classes, self.width = space, num_classes, width
        self.example_shape = tuple(input_shape)
        self.rank = len(self.example_shape) - 1
        if self.rank not in (1, 2):
            raise ValueError(f"input_shape must be (length, channels) or (height, width, "
                             f"channels), got {input_shape}")
        self.dropout = dropout
        self.reduce_after = reduction_layers(space.num_layers)
        self.stem = Stem(width, self.rank, name="stem")
        self.layers_ = [SupernetLayer(space.ops, width, self.rank, name=f"layer_{i}")
                        for i in range(space.num_layers)]
        for i, layer in enumerate(self.layers_):  # tracked by name for tf.train.Checkpoint
            setattr(self, f"layer_{i}", layer)
        self.reduce = _AVGPOOL[self.rank](2, padding="same", name="reduce")
        self.head = Head(num_classes, self.rank, dropout, name="head")
        self._op_index = tf.constant(space.op_index, tf.int32)
        self.build((None, *self.example_shape))

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.stem.build(shape)
        shape = shape[:-1] + (self.width,)
        for i, layer in enumerate(self.layers_):
            layer.build(shape)
            if i in self.reduce_after:
                shape = (shape[0], *[(s + 1) // 2 for s in shape[1:-1]], shape[-1])
        self.head.build(shape)
        self.built = True

    def call(self, x, child, training=False, update_stats=True):
        """Logits of `child` (int32 vector) on x. training=True normalizes by batch
        moments; update_stats=False then leaves the moving moments alone, so the call is a
        pure function of the weights (as `stateless_call` with `tf.switch_case` needs)."""
        child = tf.convert_to_tensor(child, tf.int32)
        skip_on = tf.not_equal(child, 0)
        h = self.stem(x, training=training, update_stats=update_stats)
        outputs = []
        for i, layer in enumerate(self.layers_):
            skips = [skip_on[k] for k in self.space.skip_index[i]]
            h = layer(h, outputs, child[self.space.op_index[i]], skips, training=training,
                      update_stats=update_stats)
            outputs.append(h)
            if i in self.reduce_after:
                outputs = [self.reduce(o) for o in outputs]
                h = outputs[-1]
        # float32 logits under a mixed-precision policy (losses and hypergradients in float32)
        return to_float32(self.head(h, training=training))

    def child_model(self, child, inherit_weights: bool = True, width: int | None = None,
                    dropout: float | None = None, name: str = "child") -> keras.Model:
        """A standalone Keras model of exactly `child`, built from the same layers.

        inherit_weights copies this supernet's weights (then width must be the supernet's);
        otherwise the model starts from a fresh initialization (width may differ).
        """
        child = self.space.validate(child)
        width = width or self.width
        if inherit_weights and width != self.width:
            raise ValueError("inherit_weights needs width equal to the supernet's width")
        model = build_child_model(self.space, child, self.example_shape, self.num_classes,
                                  width, self.dropout if dropout is None else dropout, name)
        if inherit_weights:
            model.get_layer("stem").set_weights(self.stem.get_weights())
            model.get_layer("head").set_weights(self.head.get_weights())
            for i, (sl, o) in enumerate(zip(self.layers_, self.space.layer_ops(child))):
                cl = model.get_layer(f"layer_{i}")
                cl.op.set_weights(sl.ops[o].get_weights())
                cl.bn.set_weights(sl.bn.get_weights())
        return model


def build_child_model(space: SearchSpace, child, input_shape, num_classes: int, width: int,
                      dropout: float = 0.0, name: str = "child") -> keras.Model:
    """Functional Keras model of `child` (fresh weights): Stem, ChildLayers, Head."""
    child = space.validate(child)
    rank = len(input_shape) - 1
    reduce_after = reduction_layers(space.num_layers)
    inp = keras.Input(tuple(input_shape), name="input")
    h = Stem(width, rank, name="stem")(inp)
    outputs = []
    for i, layer in enumerate(space.architecture(child)):
        h = ChildLayer(layer["op"], width, rank, name=f"layer_{i}")(
            [h] + [outputs[j] for j in layer["skips"]])
        outputs.append(h)
        if i in reduce_after:
            outputs = [_AVGPOOL[rank](2, padding="same", name=f"reduce_{i}_{j}")(o)
                       for j, o in enumerate(outputs)]
            h = outputs[-1]
    return keras.Model(inp, Head(num_classes, rank, dropout, name="head")(h), name=name)
