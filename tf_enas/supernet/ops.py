"""The candidate ops of a macro layer, as Keras layers that are exact to second order.

Every op maps (batch, *spatial, width) → the same shape, for 1-D (rank 1) and 2-D (rank 2)
inputs. Hypergradients differentiate these twice, so two Keras layers are replaced:

* `BatchNorm`: Keras's BatchNormalization stops the gradient through the batch mean in
  training mode (its HVPs are wrong); this one takes moments with plain reduce_mean:
  y = γ (x − E[x]) / sqrt(Var[x] + ε) + β, the moments over the global batch when a
  tf.distribute strategy splits it across replicas (tf_enas/distribute.py).
* `MaxPool`: Keras's MaxPooling1D gives wrong HVPs under tf.function; this one takes the
  max over stacked shifted copies of the input (stride 1, "same" padding).
"""
from __future__ import annotations

import itertools

import keras
import tensorflow as tf

from tf_enas.distribute import global_mean

_CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D}
_SEPCONV = {1: keras.layers.SeparableConv1D, 2: keras.layers.SeparableConv2D}
_AVGPOOL = {1: keras.layers.AveragePooling1D, 2: keras.layers.AveragePooling2D}


def _check_rank(rank):
    if rank not in (1, 2):
        raise ValueError(f"rank must be 1 (sequences) or 2 (images), got {rank}")
    return rank


def moments(x):
    """(E[x], Var[x]) over every axis but the last, over the global batch: under a
    tf.distribute strategy the replicas' slices are all-reduced (synchronized BN)."""
    axes = list(range(len(x.shape) - 1))
    x32 = to_float32(x)  # float32 moments under a mixed-precision policy
    mean = global_mean(x32, axes)
    var = global_mean(tf.square(x32 - mean), axes)
    return tf.cast(mean, x.dtype), tf.cast(var, x.dtype)


def to_float32(x):
    """x in float32 when it is a 16-bit float (a mixed-precision policy), else x itself."""
    return tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x


@keras.saving.register_keras_serializable(package="tf_enas")
class BatchNorm(keras.layers.Layer):
    """Batch normalization over all axes but the last, exact to second order.

    Training: normalize by the batch's moments and (when update_stats) update the moving
    ones, m ← momentum·m + (1 − momentum)·E[x]. Inference: normalize by the moving moments.
    training=True with update_stats=False is a pure function of the weights (what
    hypergradients and reward evaluation need).
    """

    def __init__(self, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.momentum, self.epsilon = momentum, epsilon

    def build(self, input_shape):
        c = (input_shape[-1],)
        self.gamma = self.add_weight(shape=c, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=c, initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=c, initializer="zeros", trainable=False,
                                           name="moving_mean")
        self.moving_variance = self.add_weight(shape=c, initializer="ones", trainable=False,
                                               name="moving_variance")

    def call(self, x, training=False, update_stats=True):
        if training:
            mean, var = moments(x)
            if update_stats:
                self.update_moving(mean, var)
        else:
            mean, var = self.moving_mean, self.moving_variance
        return (x - mean) * tf.math.rsqrt(var + self.epsilon) * self.gamma + self.beta

    def update_moving(self, mean, var, where=True):
        """m ← momentum·m + (1 − momentum)·E[x] (and the variance alike) where `where` (a
        scalar bool: the op this norm belongs to is the chosen one), else unchanged."""
        m = self.momentum
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, var)):
            moving.assign(tf.where(where, m * moving + (1 - m) * tf.stop_gradient(batch),
                                   moving))

    def get_config(self):
        return super().get_config() | {"momentum": self.momentum, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tf_enas")
class MaxPool(keras.layers.Layer):
    """Max pooling, window `pool_size` per spatial axis, stride 1, "same" padding:
    y[i] = max_{|k| ≤ pool_size//2} x[i + k] (borders padded with −inf)."""

    def __init__(self, pool_size=3, rank=1, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.rank = pool_size, _check_rank(rank)

    def call(self, x):
        k = self.pool_size
        lo, hi = (k - 1) // 2, k // 2
        pad = [[0, 0]] + [[lo, hi]] * self.rank + [[0, 0]]
        xp = tf.pad(x, pad, constant_values=x.dtype.min)
        size = tf.shape(x)
        shifted = []
        for offsets in itertools.product(range(k), repeat=self.rank):
            begin = [0, *offsets, 0]
            shifted.append(tf.slice(xp, begin, size))
        return tf.reduce_max(tf.stack(shifted, 0), 0)

    def get_config(self):
        return super().get_config() | {"pool_size": self.pool_size, "rank": self.rank}


@keras.saving.register_keras_serializable(package="tf_enas")
class ConvOp(keras.layers.Layer):
    """conv{k} / sepconv{k}: y = ReLU(BN(Conv_k(x))), width in = width out."""

    def __init__(self, width, kernel_size, rank=1, separable=False, **kwargs):
        super().__init__(**kwargs)
        self.width, self.kernel_size = width, kernel_size
        self.rank, self.separable = _check_rank(rank), separable
        conv = (_SEPCONV if separable else _CONV)[rank]
        self.conv = conv(width, kernel_size, padding="same", use_bias=False, name="conv")
        self.bn = BatchNorm(name="bn")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(tuple(input_shape[:-1]) + (self.width,))

    def call(self, x, training=False, update_stats=True):
        return self.post(tf.nn.relu(self.bn(self.pre(x), training=training,
                                            update_stats=update_stats)))

    def pre(self, x):
        """What comes before the BN: the convolution."""
        return self.conv(x)

    def post(self, y):
        """What comes after BN and ReLU: nothing."""
        return y

    def get_config(self):
        return super().get_config() | {"width": self.width, "kernel_size": self.kernel_size,
                                       "rank": self.rank, "separable": self.separable}


@keras.saving.register_keras_serializable(package="tf_enas")
class PoolOp(keras.layers.Layer):
    """avgpool3 / maxpool3 as in ENAS: y = Pool_3(ReLU(BN(Conv_1(x))))."""

    def __init__(self, width, pool, rank=1, pool_size=3, **kwargs):
        super().__init__(**kwargs)
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.width, self.pool_type, self.rank, self.pool_size = width, pool, _check_rank(rank), pool_size
        self.conv = _CONV[rank](width, 1, use_bias=False, name="conv")
        self.bn = BatchNorm(name="bn")
        self.pool = (MaxPool(pool_size, rank, name="pool") if pool == "max" else
                     _AVGPOOL[rank](pool_size, strides=1, padding="same", name="pool"))

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(tuple(input_shape[:-1]) + (self.width,))

    def call(self, x, training=False, update_stats=True):
        return self.post(tf.nn.relu(self.bn(self.pre(x), training=training,
                                            update_stats=update_stats)))

    def pre(self, x):
        """What comes before the BN: the 1×1 convolution."""
        return self.conv(x)

    def post(self, y):
        """What comes after BN and ReLU: the pooling."""
        return self.pool(y)

    def get_config(self):
        return super().get_config() | {"width": self.width, "pool": self.pool_type,
                                       "rank": self.rank, "pool_size": self.pool_size}


def make_op(name: str, width: int, rank: int) -> keras.layers.Layer:
    """The op called `name` (one of space.OPS) for inputs of `rank` spatial axes."""
    if name in ("conv3", "conv5", "sepconv3", "sepconv5"):
        return ConvOp(width, int(name[-1]), rank, separable=name.startswith("sep"), name=name)
    if name in ("avgpool3", "maxpool3"):
        return PoolOp(width, name[:3], rank, int(name[-1]), name=name)
    raise ValueError(f"unknown op {name!r}")


def op_kernel_paths(name: str) -> tuple:
    """The paths below op `name` of the kernels that `make_op` gives it (without building it)."""
    if name in ("sepconv3", "sepconv5"):
        return ("conv/depthwise_kernel", "conv/pointwise_kernel")
    if name in ("conv3", "conv5", "avgpool3", "maxpool3"):
        return ("conv/kernel",)
    raise ValueError(f"unknown op {name!r}")
