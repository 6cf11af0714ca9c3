"""Keras models as pure functions of their weights, via ``model.stateless_call``.

f(params, x, y) = mean(loss_fn(y, model_params(x))): the functional form that every
hypergradient here differentiates (twice). Non-trainable state (e.g. batch-norm moving
statistics) is read from the model at call time and its updates are discarded.
"""
import keras
import tensorflow as tf


def model_params(model):
    """The model's trainable weights as a list of tensors (the order stateless_call expects)."""
    if not model.built:
        raise ValueError(f"model_params: model {model.name!r} is not built; call it on an input "
                         "or build(input_shape) first")
    return [tf.convert_to_tensor(v.value) for v in model.trainable_variables]


def functional_loss(model, loss_fn, training=False):
    """f(params, x, y) = reduce_mean(loss_fn(y, model.stateless_call(params, ...)(x))).

    Note: a ``keras.losses.Loss`` object computes in its own dtype (float32 by default),
    so for float64 work pass a plain function such as
    ``lambda y, z: tf.nn.sparse_softmax_cross_entropy_with_logits(y, z)``.
    """
    if not isinstance(model, keras.Model) and not isinstance(model, keras.Layer):
        raise TypeError(f"functional_loss: expected a Keras model, got {type(model).__name__}")
    expected = len(model.trainable_variables)

    def f(params, x, y):
        params = list(params)
        if len(params) != expected:
            raise ValueError(f"functional_loss: got {len(params)} parameter tensors, model "
                             f"{model.name!r} has {expected} trainable variables")
        non_trainable = [v.value for v in model.non_trainable_variables]
        outputs, _ = model.stateless_call(params, non_trainable, x, training=training)
        return tf.reduce_mean(loss_fn(y, outputs))

    return f
