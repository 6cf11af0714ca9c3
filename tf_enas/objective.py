"""The losses a sampled child is judged by, as pure functions of the shared weights.

For a child (a, h) — architecture a, optimizer hyperparameters h = (η, μ, λ):

    L_train(w; a, h) = CE(supernet_a(w), train batch) + Σ_k λ_g(k)·‖W_k‖²   (W_k: kernels;
                       one λ for all, one per layer group or one per kernel: decay_groups.py)
    L_val(w; a)      = CE(supernet_a(w), validation batch)
    w_K(a, h)        = K steps of the child's own heavy-ball optimizer on L_train from the
                       shared weights w and the shared velocity v (so η and μ matter at K ≥ 1)

Everything here is differentiable in w and h (nested tapes), which the response
estimators rely on. The supernet's batch-norm statistics are read, never updated.
"""
from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from tf_enas import hypergrad
from tf_enas.decay_groups import decision_name, group_key, group_keys, is_decayed

HEAVY_BALL = hypergrad.optimizers.get("momentum")
JVPS = ("reverse", "central_difference")  # how the Gauss–Newton product takes J v
JVP_STEP = 3e-5  # the central difference's relative step (float32: error against step in
# BENCHMARKS.md, "joint search per epoch, stop 32")

Hyperparameters = collections.namedtuple("Hyperparameters",
                                         ["learning_rate", "momentum", "weight_decay"])


def _softmax_hessian(prob, u):
    """H u for H the Hessian in the logits of the mean softmax cross-entropy over the rows
    of each [N, K] block: (p_m ⊙ u_m − p_m p_mᵀu_m)/N (prob, u: [..., N, K])."""
    rows = tf.cast(tf.shape(prob)[-2], prob.dtype)
    return (prob * u - prob * tf.reduce_sum(prob * u, -1, keepdims=True)) / rows


class ChildHyperparameters:
    """(η, μ, λ) of a child (child, values): its continuous value, else its grid choice,
    else the config's lr_max / momentum / l2. With weight_decay_per "layer" or "tensor" λ is
    a vector, one entry per `decay_keys` (the continuous decisions "weight_decay_<key>");
    `decay_key(path)` is the key of the kernel at path."""

    def __init__(self, config, space):
        self.defaults = Hyperparameters(config.lr_max, config.momentum, config.l2)
        self.continuous = {d.name: i for i, d in enumerate(config.decisions())}
        self.grid = {k: (space.choice_index[k], tf.constant(np.asarray(v, np.float32)))
                     for k, v in config.choices.items() if k in Hyperparameters._fields}
        self.decay_per = config.weight_decay_per
        self.decay_keys = group_keys(config.weight_decay_per, config.num_layers, config.ops)
        self.decay_index = [self.continuous[decision_name(k)] for k in self.decay_keys]

    def decay_key(self, path: str) -> str | None:
        """The key of the λ that decays the kernel at `path` (decay_groups.group_key)."""
        return group_key(self.decay_per, path)

    def __call__(self, child, values) -> Hyperparameters:
        def pick(name):
            if name == "weight_decay" and self.decay_keys:
                return tf.gather(values, self.decay_index)
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
        keys = getattr(hyperparameters, "decay_keys", ())
        if keys:  # λ[group_index[i]] decays weight i
            own = {i: hyperparameters.decay_key(variables[i].path) for i in self.decayed}
            missing = [variables[i].path for i, k in own.items() if k not in keys]
            if missing:
                raise ValueError(f"no weight-decay decision for the kernels {missing}; the "
                                 f"decisions' keys are {list(keys)}")
            self.group_index = {i: keys.index(k) for i, k in own.items()}

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

    def gauss_newton_operator(self, params, children, values, x, jvp="reverse"):
        """v ↦ G v, G = mean_i (J_iᵀ H_i J_i + 2λ_i⊙I) over the children (children [n, D],
        values [n, C]): the generalized Gauss–Newton matrix of their mean L_train, positive
        semi-definite, on the weights flattened in order (v and G v 1-D, as
        hypergrad.flatten: a solver's loop then carries one tensor). J_i = ∂logits_i/∂w, H_i
        the Hessian of the mean softmax cross-entropy in the logits,
        (H u)_m = (p_m ⊙ u_m − p_m p_mᵀu_m)/N.

        jvp: how J v is taken. "reverse": two reverse passes, v ↦ ∇_u ⟨Jᵀu, v⟩ (exact to
        rounding; forward mode does not go through the supernet's tf.switch_case inside
        tf.map_fn), each product with its own forward pass per child.
        "central_difference": (f(w + t v) − f(w − t v)) / 2t with t = JVP_STEP·(1 + ‖w‖)/‖v‖,
        two forward passes and no second-order graph (faster to trace, optimize and run; ReLU
        kinks and float32 rounding make G v off by about 0.3% on the benchmark's supernet,
        BENCHMARKS.md); the forward pass at w is taped here, once per child, and every
        product's Jᵀ(H J v) is a backward pass over its stored activations (build the
        operator outside a solver's loop). Its tape is persistent only in eager mode: in a
        traced function apply it once (a solver's loop body), since under a persistent tape
        each tf.switch_case of the supernet is traced as a function with its gradient
        (TensorFlow's higher-order tape path): a slower trace, which is also why "reverse"
        keeps its forward pass inside the product (BENCHMARKS.md, stop 34)."""
        if jvp not in JVPS:
            raise ValueError(f"jvp must be one of {JVPS}, got {jvp!r}")
        sizes = [p.shape.num_elements() for p in params]

        def decay(a):  # 2λ per weight of one child
            rates = self.decay_rates(self.hyperparameters(a[0], a[1]).weight_decay)
            per_weight = tf.stack([rates.get(i, 0.0) for i in range(len(params))])
            return 2.0 * tf.repeat(per_weight, sizes)
        mean_decay = tf.reduce_mean(tf.map_fn(decay, (children, values),
                                              fn_output_signature=tf.float32), 0)
        if jvp == "reverse":
            like = tf.TensorSpec([sum(sizes)], tf.float32)
            return lambda v: tf.reduce_mean(tf.map_fn(
                lambda a: self._exact_gauss_newton_product(params, a, x, v), children,
                fn_output_signature=like), 0) + mean_decay * v

        with tf.GradientTape(persistent=tf.executing_eagerly()) as tape:
            tape.watch(params)
            logits = tf.map_fn(lambda a: self.logits(params, a, x), children,
                               fn_output_signature=tf.float32)            # [n, N, K]
        prob = tf.nn.softmax(logits)
        n = tf.shape(children)[0]
        signs = tf.repeat(tf.constant([1.0, -1.0]), n)  # f(w + t v), then f(w − t v)

        def product(vector):
            t = JVP_STEP * (1.0 + tf.linalg.global_norm(params)) / tf.maximum(
                tf.norm(vector), 1e-30)
            step = [t * d for d in hypergrad.unflatten(vector, params)]
            both = tf.map_fn(lambda a: self.logits([p + a[1] * d for p, d in zip(params, step)],
                                                   a[0], x),
                             (tf.concat([children, children], 0), signs),
                             fn_output_signature=tf.float32)  # one traced forward pass
            jv = (both[:n] - both[n:]) / (2.0 * t)
            hjv = _softmax_hessian(prob, jv) / tf.cast(n, jv.dtype)  # the mean over children
            out = tape.gradient(logits, params, output_gradients=hjv,
                                unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return hypergrad.flatten(out) + mean_decay * vector
        return product

    def _exact_gauss_newton_product(self, params, child, x, vector):
        """Jᵀ H J v of one child, J v by two reverse passes (1-D vector and result)."""
        with tf.GradientTape(persistent=True) as inner:
            inner.watch(params)
            logits = self.logits(params, child, x)
        with tf.GradientTape() as outer:
            u = tf.zeros_like(logits)
            outer.watch(u)
            jtu = inner.gradient(logits, params, output_gradients=u,
                                 unconnected_gradients=tf.UnconnectedGradients.ZERO)
            dot = tf.reduce_sum(hypergrad.flatten(jtu) * vector)
        hjv = _softmax_hessian(tf.nn.softmax(logits), outer.gradient(dot, u))
        return hypergrad.flatten(inner.gradient(
            logits, params, output_gradients=hjv,
            unconnected_gradients=tf.UnconnectedGradients.ZERO))

    def train_loss(self, params, child, values, x, y):
        return self.val_loss(params, child, x, y) + self.child_penalty(params, child, values)

    def child_penalty(self, params, child, values):
        """L_train − L_val: the weight-decay penalty at the child's decay rates."""
        return self.penalty(params, self.hyperparameters(child, values).weight_decay)

    def lookahead(self, params, velocity, child, values, x, y, steps, truncate=0,
                  first_gradient=None):
        """w_K: `steps` heavy-ball steps of the child's own (η·lr_scale, μ, λ) from
        (params, velocity); the first `truncate` steps are not differentiated through.
        first_gradient: ∇_w L_train at params on (x, y) (a list) where the caller has it."""
        hp = self.hyperparameters(child, values)
        hyper = {"learning_rate": hp.learning_rate * self.lr_scale(), "momentum": hp.momentum}
        for t in range(steps):
            if t == 0 and first_gradient is not None:
                grads = first_gradient
            else:
                _, grads = hypergrad.gradient(
                    lambda p: self.train_loss(p, child, values, x, y), params)
            params, velocity = HEAVY_BALL.update(params, grads, velocity, t, hyper)
            if t < truncate:
                params = [tf.stop_gradient(p) for p in params]
                velocity = [tf.stop_gradient(v) for v in velocity]
        return params
