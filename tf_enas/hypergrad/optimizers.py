"""Differentiable optimizer steps as pure functions of lists of tensors.

Each step maps (params, grads, state, step index, hyperparameters) to (params, state)
with plain TensorFlow ops, so it can be differentiated (reverse or forward mode) with
respect to the params *and* the hyperparameters (learning rate, momentum, ...).
``get(name)`` returns the ``Optimizer(init, update)`` pair used by the unrolled and
forward-mode hypergradients.
"""
import collections

import tensorflow as tf


def sgd_step(params, grads, learning_rate):
    """w <- w - lr * g."""
    return [w - learning_rate * g for w, g in zip(params, grads)]


def momentum_step(params, velocity, grads, learning_rate, momentum):
    """Heavy ball: v <- mu * v + g;  w <- w - lr * v.  Returns (params, velocity)."""
    velocity = [momentum * v + g for v, g in zip(velocity, grads)]
    return [w - learning_rate * v for w, v in zip(params, velocity)], velocity


def adam_step(params, m, v, grads, step, learning_rate, beta1, beta2, epsilon, eps_root=1e-16):
    """Adam (Kingma & Ba), t = step + 1:  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    w <- w - lr * m_hat / (sqrt(v_hat + eps_root) + eps), m_hat = m/(1-b1^t), v_hat = v/(1-b2^t).

    eps_root > 0 keeps the derivative of sqrt finite where v_hat = 0 (a weight that has
    had zero gradient so far); without it reverse mode through Adam returns NaN there.
    Returns (params, m, v).
    """
    dtype = params[0].dtype
    t = tf.cast(step, dtype) + 1
    m = [beta1 * mi + (1 - beta1) * g for mi, g in zip(m, grads)]
    v = [beta2 * vi + (1 - beta2) * tf.square(g) for vi, g in zip(v, grads)]
    m_scale = 1 / (1 - beta1 ** t)
    v_scale = 1 / (1 - beta2 ** t)
    params = [w - learning_rate * (mi * m_scale) / (tf.sqrt(vi * v_scale + eps_root) + epsilon)
              for w, mi, vi in zip(params, m, v)]
    return params, m, v


class Optimizer(collections.namedtuple("Optimizer", ["name", "init", "update"])):
    """init(params) -> state (list of tensors);
    update(params, grads, state, step, hyper) -> (params, state), hyper a dict of scalars."""


def _sgd_update(params, grads, state, step, hyper):
    del step
    return sgd_step(params, grads, hyper["learning_rate"]), state


def _momentum_update(params, grads, state, step, hyper):
    del step
    params, velocity = momentum_step(params, state, grads, hyper["learning_rate"],
                                     hyper["momentum"])
    return params, velocity


def _adam_update(params, grads, state, step, hyper):
    n = len(params)
    params, m, v = adam_step(params, state[:n], state[n:], grads, step, hyper["learning_rate"],
                             hyper["momentum"], hyper["beta2"], hyper["epsilon"],
                             hyper["eps_root"])
    return params, m + v


def _zeros(params, copies):
    return [tf.zeros_like(w) for _ in range(copies) for w in params]


OPTIMIZERS = {
    "sgd": Optimizer("sgd", lambda params: [], _sgd_update),
    "momentum": Optimizer("momentum", lambda params: _zeros(params, 1), _momentum_update),
    "adam": Optimizer("adam", lambda params: _zeros(params, 2), _adam_update),
}


def get(name):
    """The Optimizer called name ("sgd", "momentum" or "adam")."""
    if isinstance(name, Optimizer):
        return name
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name]
