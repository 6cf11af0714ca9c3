"""The supernet's shared weights w and their optimizer: one step of a sampled child (a, h)

    v ← μ·v + clip(∇_w [CE(a, w) + λ·Σ‖W‖²]),   w ← w − η·s_t·v

(heavy ball, the child's own η, μ, λ; s_t the cosine-with-restarts multiplier at shared
step t). The same update is the lookahead of the controller's objective (objective.py).
Under the mixed_float16 policy the gradient is taken of S·loss and divided by S (dynamic
loss scaling, `DynamicLossScale`), so that small float16 gradients do not underflow.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tf_enas import distribute
from tf_enas.objective import HEAVY_BALL, ChildObjective


class DynamicLossScale(tf.Module):
    """The loss scale S of float16 training, with keras.optimizers.LossScaleOptimizer's rule
    (that wrapper needs a Keras optimizer; the shared step's update is a functional heavy
    ball): gradients of S·loss, divided by S; a step whose gradients are non-finite is
    skipped and S ← S/2; after `growth_steps` applied steps in a row, S ← 2·S. S and the
    count are variables, saved in the checkpoint with the SharedWeights."""

    def __init__(self, initial_scale: float = 2.0 ** 15, growth_steps: int = 2000):
        super().__init__(name="loss_scale")
        self.growth_steps = growth_steps
        self.scale = tf.Variable(initial_scale, dtype=tf.float32, trainable=False,
                                 name="scale")
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")

    def update(self, grads_finite):
        """S after a step whose (unscaled) gradients were finite or not."""
        grow = grads_finite & (self.good_steps + 1 >= self.growth_steps)
        self.scale.assign(tf.where(grads_finite, tf.where(grow, 2.0, 1.0), 0.5) * self.scale)
        self.good_steps.assign(tf.where(grads_finite & ~grow, self.good_steps + 1, 0))


class StaticChild:
    """A plain Keras model called like a supernet (`supernet(x, child, training)`, the child
    unused), so that SharedWeights takes the same step on one fixed child (the benchmark's
    static side, tests)."""

    def __init__(self, model):
        self.model = model
        self.trainable_variables = model.trainable_variables
        self.non_trainable_variables = model.non_trainable_variables

    def __call__(self, x, child, training=False):
        del child
        return self.model(x, training=training)


def clip_unscaled(grads, clip_norm, scale=1.0):
    """(g/S clipped to global norm clip_norm, ‖g‖/S) for g the gradients of S·loss: one
    multiplication per tensor, g · c / (S·max(‖g‖/S, c)) (tf.clip_by_global_norm at S = 1)."""
    norm = tf.linalg.global_norm(grads) / scale
    factor = clip_norm / (scale * tf.maximum(norm, clip_norm))
    return [g * factor for g in grads], norm


class SharedWeights(tf.Module):
    """Args: supernet; config (a SearchConfig: grad_clip_norm, mixed_precision and the
    schedule's lr_min, lr_max, lr_restart_epochs); steps_per_epoch; hyperparameters(child,
    values) -> objective.Hyperparameters; loss_scale: a DynamicLossScale (default: one under
    mixed_float16, none otherwise)."""

    def __init__(self, supernet, config, steps_per_epoch: int, hyperparameters,
                 loss_scale: DynamicLossScale | None = None):
        super().__init__(name="shared_weights")
        self.supernet = supernet
        self.grad_clip_norm = config.grad_clip_norm
        self.schedule = keras.optimizers.schedules.CosineDecayRestarts(
            1.0, config.lr_restart_epochs * steps_per_epoch, t_mul=2.0,
            alpha=config.lr_min / config.lr_max)
        self.velocity = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"velocity_{i}")
                         for i, v in enumerate(supernet.trainable_variables)]
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="shared_steps")
        self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped")
        self.objective = ChildObjective(supernet, hyperparameters, self.lr_scale)
        if loss_scale is None and config.mixed_precision == "mixed_float16":
            loss_scale = DynamicLossScale()
        self.loss_scale = loss_scale
        # the same step compiled by XLA (config.jit_compile; BENCHMARKS.md "scaling")
        self.compiled_step = tf.function(self.step, autograph=False, jit_compile=True)

    def lr_scale(self):
        """s_t, the schedule's multiplier at the current shared step."""
        return tf.cast(self.schedule(self.steps), tf.float32)

    def state(self):
        """(w, v) as tensors: where every child's lookahead starts."""
        return self.objective.weights(), [tf.convert_to_tensor(v) for v in self.velocity]

    @tf.function(autograph=False)
    def train_step(self, x, y, child, values):
        """`step` under tf.function."""
        return self.step(x, y, child, values)

    def step(self, x, y, child, values):
        """One step of `child` with its hyperparameters on (x, y); a step whose loss,
        gradient or new weights are non-finite is skipped (weights, velocity and BN
        statistics untouched) and counted; with a loss scale, S is updated (halved when
        the gradients were non-finite).

        Under a tf.distribute strategy (called by `strategy.run`, not as a nested
        tf.function, inside the caller's) (x, y) is the global
        batch: each replica takes its slice, the child is the first replica's, and the
        loss, accuracy and gradients are means over replicas (tf_enas/distribute.py)."""
        x, y = distribute.local_slice(x), distribute.local_slice(y)
        child, values = distribute.from_first_replica((child, values))
        hp = self.objective.hyperparameters(child, values)
        stats = self.supernet.non_trainable_variables
        saved = [tf.identity(v.value) for v in stats]
        weights = self.supernet.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.supernet(x, child, training=True)
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            params = [v.value for v in weights]
            loss = ce + self.objective.penalty(params, hp.weight_decay)
        scale = tf.convert_to_tensor(self.loss_scale.scale) if self.loss_scale else None
        grads = distribute.replica_mean(tape.gradient(loss, weights, output_gradients=scale))
        grads, norm = clip_unscaled(grads, self.grad_clip_norm,
                                    1.0 if scale is None else scale)
        lr = hp.learning_rate * self.lr_scale()
        new_w, new_v = HEAVY_BALL.update(params, grads, self.state()[1], self.steps,
                                         {"learning_rate": lr, "momentum": hp.momentum})
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y),
                                     tf.float32))
        ce, loss, acc = distribute.replica_mean((ce, loss, acc))
        finite = (tf.math.is_finite(loss) & tf.math.is_finite(norm)
                  & tf.math.is_finite(tf.linalg.global_norm(new_w))
                  & tf.math.is_finite(tf.linalg.global_norm(new_v)))

        def apply():
            for var, t in zip(weights + self.velocity, new_w + new_v):
                var.assign(t)
            self.steps.assign_add(1)
            return tf.constant(0, tf.int64)

        def skip():  # undo the BN statistics this step's forward pass moved
            for v, t in zip(stats, saved):
                v.assign(t)
            return tf.constant(1, tf.int64)

        skipped = tf.cond(finite, apply, skip)
        self.skipped_steps.assign_add(skipped)
        if self.loss_scale:
            self.loss_scale.update(tf.math.is_finite(norm))
        return {"train/loss": ce, "train/accuracy": acc, "train/grad_norm": norm,
                "train/lr": lr, "train/step_skipped": tf.cast(skipped, tf.float32)}

    @tf.function(autograph=False)
    def accuracies(self, children, x, y):
        """Accuracy of each child on (x, y) with batch statistics, no state change → [B];
        a child with non-finite logits scores 0 (the worst reward)."""
        def score(child):
            logits = self.supernet(x, child, training=True, update_stats=False)
            pred = tf.argmax(logits, -1, output_type=tf.int32)
            acc = tf.reduce_mean(tf.cast(tf.equal(pred, y), tf.float32))
            return tf.where(tf.reduce_all(tf.math.is_finite(logits)), acc, 0.0)

        return tf.map_fn(score, children, fn_output_signature=tf.float32)
