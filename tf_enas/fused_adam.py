"""Keras's Adam step with one fused kernel per variable (tf.raw_ops.ResourceApplyAdam).

    m ← β₁m + (1 − β₁)g,  v ← β₂v + (1 − β₂)g²,  w ← w − η·√(1 − β₂ᵗ)/(1 − β₁ᵗ)·m/(√v + ε)

the update of `keras.optimizers.Adam.update_step`, on the optimizer's own slots and step
counter (so its variables, checkpoints and get_config stay Keras's). A controller has
tens of small variables, where Keras's dozen ops per variable cost more than the
arithmetic (BENCHMARKS.md, "controller overhead per evaluation"). An optimizer with
anything else to do (clipping, weight decay, EMA, AMSGrad, loss scaling, gradient
accumulation) takes Keras's own path.
"""
from __future__ import annotations

import keras
import tensorflow as tf

_EXTRAS = ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay", "loss_scale_factor",
           "gradient_accumulation_steps")


def is_plain_adam(optimizer) -> bool:
    """Whether `optimizer` is a float32 Keras Adam that does nothing beyond the update above."""
    return (type(optimizer) is keras.optimizers.Adam and not optimizer.amsgrad
            and not optimizer.use_ema and not any(getattr(optimizer, k) for k in _EXTRAS)
            and not isinstance(optimizer._learning_rate,
                               keras.optimizers.schedules.LearningRateSchedule))


def apply_gradients(optimizer, grads, variables) -> None:
    """optimizer.apply_gradients(zip(grads, variables)), fused where is_plain_adam
    (float32 variables of tf.Variable kind; dense gradients)."""
    if not is_plain_adam(optimizer):
        optimizer.apply_gradients(zip(grads, variables))
        return
    step = tf.cast(optimizer.iterations + 1, tf.float32)
    beta_1, beta_2 = tf.constant(optimizer.beta_1), tf.constant(optimizer.beta_2)
    beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
    lr = tf.cast(optimizer.learning_rate, tf.float32)
    epsilon = tf.constant(optimizer.epsilon, tf.float32)
    for grad, variable in zip(grads, variables):
        index = optimizer._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=optimizer._momentums[index].value.handle,
            v=optimizer._velocities[index].value.handle, beta1_power=beta_1_power,
            beta2_power=beta_2_power, lr=lr, beta1=beta_1, beta2=beta_2, epsilon=epsilon,
            grad=grad)
    optimizer.iterations.assign_add(1)
