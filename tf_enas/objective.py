"""The losses a sampled child is judged by, as pure functions of the shared weights.

For a child (a, h) — architecture a, optimizer hyperparameters h = (η, μ, λ):

    L_train(w; a, h) = CE(supernet_a(w), train batch) + Σ_k λ_g(k)·‖W_k‖²   (W_k: kernels;
                       one λ for all, or one per layer group g: stem, layer_i, head)
    L_val(w; a)      = CE(supernet_a(w), validation batch)
    w_K(a, h)        = K steps of the child's own heavy-ball optimizer on L_train from the
                       shared weights w and the shared velocity v (so η and μ matter at K ≥ 1)

Everything here is differentiable in w and h (nested tapes), which the response
estimators rely on. The supernet's batch-norm statistics are read, never updated.
"""
from __future__ import annotations

import collections
import re

import numpy as np
import tensorflow as tf

from tf_enas import hypergrad

HEAVY_BALL = hypergrad.optimizers.get("momentum")

Hyperparameters = collections.namedtuple("Hyperparameters",
                                         ["learning_rate", "momentum", "weight_decay"])


_GROUP = re.compile(r"^(stem|head|layer_\d+)$")


def decay_group(path: str) -> str | None:
    """The macro layer group a weight's path belongs to ("stem", "layer_i", "head")."""
    return next((p for p in path.split("/") if _GROUP.match(p)), None)


def is_decayed(variable) -> bool:
    """Weight decay applies to kernels (not biases, not batch-norm scales and shifts)."""
    return variable.path.split("/")[-1] in ("kernel", "depthwise_kernel", "pointwise_kernel")


def layer_groups(num_layers: int) -> tuple:
    """The weight-decay groups of a macro supernet, in order."""
    return ("stem", *(f"layer_{i}" for i in range(num_layers)), "head")


class ChildHyperparameters:
    """(η, μ, λ) of a child (child, values): its continuous value, else its grid choice,
    else the config's lr_max / momentum / l2. With per-layer weight decay λ is a vector,
    one entry per `decay_groups` (the continuous decisions "weight_decay_<group>")."""

    def __init__(self, config, space):
        self.defaults = Hyperparameters(config.lr_max, config.momentum, config.l2)
        self.continuous = {d.name: i for i, d in enumerate(config.decisions())}
        self.grid = {k: (space.choice_index[k], tf.constant(np.asarray(v, np.float32)))
                     for k, v in config.choices.items() if k in Hyperparameters._fields}
        self.decay_groups = (layer_groups(config.num_layers) if config.weight_decay_per_layer
                             else None)

    def __call__(self, child, values) -> Hyperparameters:
        def pick(name):
            if name == "weight_decay" and self.decay_groups:
                return tf.stack([values[self.continuous[f"weight_decay_{g}"]]
                                 for g in self.decay_groups])
            if name in self.continuous:
                return values[self.continuous[name]]
            if name in self.grid:
                index, grid = self.grid[name]
                return tf.gather(grid, child[index])
            return tf.constant(getattr(self.defaults, name), tf.float32)
        return Hyperparameters(*(pick(k) for k in Hyperparameters._fields))


class ChildObjective:
    """L_train, L_val and the K-step lookahead of one child on the shared supernet.

    Args:
      supernet: the Supernet holding the shared weights.
      hyperparameters: fn(child, values) -> Hyperparameters of scalar tensors.
      lr_scale: fn() -> the learning-rate schedule's multiplier at the current shared step.
    """

    def __init__(self, supernet, hyperparameters, lr_scale=lambda: 1.0):
        self.supernet = supernet
        self.hyperparameters = hyperparameters
        self.lr_scale = lr_scale
        variables = supernet.trainable_variables
        self.decayed = [i for i, v in enumerate(variables) if is_decayed(v)]
        if not self.decayed:
            raise ValueError("the supernet has no kernels to apply weight decay to")
        groups = getattr(hyperparameters, "decay_groups", None)
        if groups:  # λ[group_index[i]] decays weight i
            self.group_index = {i: groups.index(decay_group(variables[i].path))
                                for i in self.decayed}

    def weights(self) -> list:
        """The shared weights as tensors (the point w every function here is taken at)."""
        return [tf.convert_to_tensor(v.value) for v in self.supernet.trainable_variables]

    def logits(self, params, child, x):
        stats = [v.value for v in self.supernet.non_trainable_variables]
        out, _ = self.supernet.stateless_call(params, stats, x, child=child, training=True,
                                              update_stats=False)
        return out

    def val_loss(self, params, child, x, y):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            y, self.logits(params, child, x)))

    def decay_rates(self, weight_decay) -> dict:
        """{i: λ of weight i} over the decayed kernels (λ a scalar or one per group)."""
        if weight_decay.shape.rank == 0:
            return {i: weight_decay for i in self.decayed}
        return {i: weight_decay[g] for i, g in self.group_index.items()}

    def penalty(self, params, weight_decay):
        """Σ_k λ_k ‖W_k‖² over the decayed kernels."""
        if weight_decay.shape.rank == 0:  # one λ: the sum first (fewer ops)
            return weight_decay * tf.add_n([tf.reduce_sum(tf.square(params[i]))
                                            for i in self.decayed])
        return tf.add_n([lam * tf.reduce_sum(tf.square(params[i]))
                         for i, lam in self.decay_rates(weight_decay).items()])

    def gauss_newton_product(self, params, child, values, x, y, vector):
        """G v = Jᵀ H_ℓ J v + 2λ_k·v_k (decayed kernels): the generalized Gauss–Newton matrix of
        L_train, positive semi-definite. J = ∂logits/∂w, H_ℓ the Hessian of
        the mean softmax cross-entropy in the logits, (H_ℓ u)_n = (p_n ⊙ u_n − p_n p_nᵀu_n)/N."""
        # J v by two reverse passes (v ↦ ∇_u ⟨Jᵀu, v⟩): forward mode does not go through
        # the supernet's tf.switch_case inside tf.map_fn. One forward pass serves J v and Jᵀ.
        with tf.GradientTape() as outer:
            with tf.GradientTape(persistent=True) as inner:
                inner.watch(params)
                logits = self.logits(params, child, x)
            u = tf.zeros_like(logits)
            outer.watch(u)
            jtu = inner.gradient(logits, params, output_gradients=u,
                                 unconnected_gradients=tf.UnconnectedGradients.ZERO)
            dot = tf.add_n([tf.reduce_sum(a * b) for a, b in zip(jtu, vector)])
        jv = outer.gradient(dot, u)
        p = tf.nn.softmax(logits)
        hjv = (p * jv - p * tf.reduce_sum(p * jv, -1, keepdims=True)) / tf.cast(
            tf.shape(logits)[0], logits.dtype)
        out = inner.gradient(logits, params, output_gradients=hjv,
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
        rates = self.decay_rates(self.hyperparameters(child, values).weight_decay)
        return [o + 2.0 * rates[i] * v if i in rates else o
                for i, (o, v) in enumerate(zip(out, vector))]

    def train_loss(self, params, child, values, x, y):
        hp = self.hyperparameters(child, values)
        return self.val_loss(params, child, x, y) + self.penalty(params, hp.weight_decay)

    def lookahead(self, params, velocity, child, values, x, y, steps, truncate=0):
        """w_K: `steps` heavy-ball steps of the child's own (η·lr_scale, μ, λ) from
        (params, velocity); the first `truncate` steps are not differentiated through."""
        hp = self.hyperparameters(child, values)
        hyper = {"learning_rate": hp.learning_rate * self.lr_scale(), "momentum": hp.momentum}
        for t in range(steps):
            _, grads = hypergrad.gradient(
                lambda p: self.train_loss(p, child, values, x, y), params)
            params, velocity = HEAVY_BALL.update(params, grads, velocity, t, hyper)
            if t < truncate:
                params = [tf.stop_gradient(p) for p in params]
                velocity = [tf.stop_gradient(v) for v in velocity]
        return params
