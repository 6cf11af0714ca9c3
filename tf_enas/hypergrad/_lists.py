"""Vector algebra on lists of tensors (the parameter "vectors" of every solver here).

A list [t_1, ..., t_n] stands for the concatenation of the flattened t_i; all
helpers work elementwise over the list and reduce in the list's dtype.
"""
import tensorflow as tf


def as_tensors(xs):
    """Reads variables / converts arrays: [x_i] -> [tf.Tensor]; a bare tensor becomes [x]."""
    if isinstance(xs, (tf.Tensor, tf.Variable)) or not isinstance(xs, (list, tuple)):
        xs = [xs]
    return [tf.convert_to_tensor(x) for x in xs]


def scalar(c, dtype):
    """c as a tensor of dtype; Python numbers convert directly (tf.cast(0.1, tf.float64) would
    round through float32)."""
    if isinstance(c, (tf.Tensor, tf.Variable)) or hasattr(c, "dtype"):
        return tf.cast(c, dtype)
    return tf.constant(c, dtype)


def zeros_for_none(grads, like):
    """g_i if g_i is not None else 0 (shape and dtype of like_i)."""
    return [tf.zeros_like(x) if g is None else tf.convert_to_tensor(g)
            for g, x in zip(grads, like)]


def dot(a, b):
    """<a, b> = sum_i sum(a_i * b_i)."""
    return tf.add_n([tf.reduce_sum(x * y) for x, y in zip(a, b)])


def norm(a):
    """||a||_2 = sqrt(<a, a>)."""
    return tf.sqrt(dot(a, a))


def add(a, b):
    """a + b."""
    return [x + y for x, y in zip(a, b)]


def sub(a, b):
    """a - b."""
    return [x - y for x, y in zip(a, b)]


def scale(c, a):
    """c * a for a scalar c."""
    return [scalar(c, x.dtype) * x for x in a]


def axpy(c, x, y):
    """c * x + y for a scalar c."""
    return [scalar(c, xi.dtype) * xi + yi for xi, yi in zip(x, y)]


def all_finite(a):
    """True iff every entry of every a_i is finite."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(x)) for x in a])


def select(pred, a, b):
    """a if pred else b, elementwise over the list (pred a scalar bool tensor)."""
    return [tf.where(pred, x, y) for x, y in zip(a, b)]


def flatten(a):
    """[a_i] -> one 1-D tensor (concatenation of the flattened a_i)."""
    return tf.concat([tf.reshape(x, [-1]) for x in a], axis=0)


def unflatten(v, like):
    """Inverse of flatten: 1-D v -> list shaped like `like` (static shapes where known)."""
    static = all(x.shape.is_fully_defined() for x in like)
    sizes = [x.shape.num_elements() if static else tf.size(x) for x in like]
    parts = tf.split(v, sizes) if len(like) > 1 else [v]
    return [tf.reshape(p, x.shape if static else tf.shape(x)) for p, x in zip(parts, like)]


def num_elements(a):
    """Static total number of entries (all shapes must be fully defined)."""
    total = 0
    for x in a:
        if not x.shape.is_fully_defined():
            raise ValueError(f"shape {x.shape} is not fully defined; dense methods need static shapes")
        total += x.shape.num_elements()
    return total
