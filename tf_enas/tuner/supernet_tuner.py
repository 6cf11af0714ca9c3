"""SupernetTuner: keras-tuner trials that share one supernet's weights (ENAS as a Tuner).

A trial is one child of a tf_enas SearchSpace (its decisions are keras-tuner Choices, see
`SearchSpace.to_hyperparameters`). Instead of training the child from scratch, the trial
trains the shared supernet on that child for `steps_per_trial` batches (SGD-Nesterov,
global-norm clipping; the child's own `learning_rate` choice when the space has one),
then scores it on the validation data with batch statistics and no state change (as the
ENAS search does). So a trial costs a few steps, and each trial starts from the weights
every earlier trial trained.

`get_best_models` returns standalone Keras models of the best children
(`Supernet.child_model`), with the supernet's weights as they are *now* (after the whole
search), compiled for sparse-label classification. The supernet and its optimizer are a
tf.train.Checkpoint in the project directory, written after every trial, so
`overwrite=False` resumes with the trained weights. In a distributed search each worker
trains its own supernet (weights are shared between the trials of one worker).
"""
from __future__ import annotations

import os
import zlib

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf

from tf_enas.space import SearchSpace
from tf_enas.supernet import Supernet
from tf_enas.tuner.policy_oracle import PolicyOracle, PolicyUpdate


class _SpaceHyperModel(kt.HyperModel):
    """Declares one Choice per decision of `space`; `build` returns the child vector."""

    def __init__(self, space: SearchSpace):
        super().__init__(name="supernet_space")
        self.space = space

    def build(self, hp):
        for d in self.space.decisions:
            hp.Choice(d.name, [v.item() if isinstance(v, np.generic) else v for v in d.values])
        return self.space.child_from_values(hp.values)


class SupernetTuner(kt.engine.base_tuner.BaseTuner):
    """A keras-tuner Tuner over the children of `space`, with weight sharing.

    Args:
      space: the tf_enas SearchSpace (architecture decisions and optimizer choices).
      input_shape: per-example input shape; num_classes: output classes.
      oracle: any keras-tuner Oracle (default: a PolicyOracle on `objective` that learns
        by REINFORCE, `PolicyUpdate()`, as ENAS does: the scores come from shared weights
        that change during the search; PolicyOracle's default density-ratio rule was
        chosen on fixed lookup tables and is not measured here).
      objective, max_trials, seed: for the default oracle ("val_accuracy" is maximized;
        "val_loss" is also reported).
      width: channels of the supernet. steps_per_trial, batch_size: shared-weight training
        per trial. learning_rate, momentum, grad_clip_norm: SGD of the shared weights.
      warmup_steps: steps on uniformly random children before the first trial (ENAS trains
        the shared weights before trusting their rewards).
      eval_batch_size: validation batch size.
      directory, project_name, overwrite: as in keras-tuner.
    """

    def __init__(self, space: SearchSpace, input_shape, num_classes: int, oracle=None,
                 objective="val_accuracy", max_trials: int = 20, seed: int = 0,
                 width: int = 16, steps_per_trial: int = 20, batch_size: int = 64,
                 learning_rate: float = 0.05, momentum: float = 0.9,
                 grad_clip_norm: float = 5.0, warmup_steps: int = 0,
                 eval_batch_size: int = 256, **kwargs):
        for k, v in {"steps_per_trial": steps_per_trial, "batch_size": batch_size,
                     "eval_batch_size": eval_batch_size, "width": width}.items():
            if v < 1:
                raise ValueError(f"{k} must be >= 1, got {v}")
        if warmup_steps < 0 or learning_rate <= 0 or not 0 <= momentum < 1:
            raise ValueError("need warmup_steps >= 0, learning_rate > 0, 0 <= momentum < 1")
        self.space, self.seed = space, int(seed)
        self.steps_per_trial, self.batch_size = int(steps_per_trial), int(batch_size)
        self.eval_batch_size, self.warmup_steps = int(eval_batch_size), int(warmup_steps)
        self.learning_rate, self.grad_clip_norm = float(learning_rate), float(grad_clip_norm)
        keras.utils.set_random_seed(self.seed)
        self.supernet = Supernet(space, input_shape, num_classes, width=width)
        self.optimizer = keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True)
        self.optimizer.build(self.supernet.trainable_variables)
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps")
        self.checkpoint = tf.train.Checkpoint(supernet=self.supernet, optimizer=self.optimizer,
                                              steps=self.steps)
        self._lr_index = space.choice_index.get("learning_rate")
        if oracle is None:
            oracle = PolicyOracle(objective=objective, max_trials=max_trials, seed=seed + 1,
                                  update=PolicyUpdate())
        super().__init__(oracle, _SpaceHyperModel(space), **kwargs)

    # --- shared-weight training ---------------------------------------------------------
    @tf.function(autograph=False, reduce_retracing=True)
    def train_step(self, x, y, child, learning_rate):
        """One SGD step of the shared weights on child (int32 vector); returns the loss."""
        weights = self.supernet.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.supernet(x, child, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, weights), self.grad_clip_norm)
        finite = tf.math.is_finite(loss)

        def apply():
            self.optimizer.learning_rate.assign(learning_rate)
            self.optimizer.apply(grads, weights)
            return tf.constant(1, tf.int64)

        self.steps.assign_add(tf.cond(finite, apply, lambda: tf.constant(0, tf.int64)))
        return loss

    @tf.function(autograph=False, reduce_retracing=True)
    def _eval_batch(self, x, y, child):
        logits = self.supernet(x, child, training=True, update_stats=False)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        return tf.reduce_sum(ce), tf.reduce_sum(correct)

    def evaluate_child(self, child, x, y) -> dict:
        """{"val_loss", "val_accuracy"} of `child` on (x, y) with the shared weights."""
        child = tf.constant(self.space.validate(child))
        total_ce = total_correct = 0.0
        for i in range(0, len(x), self.eval_batch_size):
            ce, correct = self._eval_batch(tf.constant(x[i:i + self.eval_batch_size]),
                                           tf.constant(y[i:i + self.eval_batch_size]), child)
            total_ce += float(ce)
            total_correct += float(correct)
        return {"val_loss": total_ce / len(x), "val_accuracy": total_correct / len(x)}

    def _train(self, child, x, y, steps: int, salt: int):
        child = self.space.validate(child)
        lr = self.learning_rate if self._lr_index is None else float(
            self.space.decisions[self._lr_index].values[child[self._lr_index]])
        rng = np.random.default_rng([self.seed, salt])
        losses = []
        for _ in range(steps):
            b = rng.choice(len(x), min(self.batch_size, len(x)), replace=False)
            losses.append(float(self.train_step(tf.constant(x[b]), tf.constant(y[b]),
                                                tf.constant(child), tf.constant(lr, tf.float32))))
        return losses

    # --- keras-tuner hooks ----------------------------------------------------------------
    def search(self, x, y, validation_data, **kwargs):
        """Runs the search: x, y the training arrays; validation_data=(x_val, y_val)."""
        x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
        xv, yv = validation_data
        validation_data = (np.asarray(xv, np.float32), np.asarray(yv, np.int32))
        if self.warmup_steps and int(self.steps.numpy()) == 0:
            rng = np.random.default_rng([self.seed, 1 << 30])
            for i in range(self.warmup_steps):
                self._train(self.space.random(rng), x, y, 1, (1 << 31) + i)
        return super().search(x, y, validation_data=validation_data, **kwargs)

    def run_trial(self, trial, x, y, validation_data, **kwargs):
        """Trains the trial's child on the shared weights, then scores it."""
        child = self.space.child_from_values(trial.hyperparameters.values)
        salt = int(trial.trial_id) if str(trial.trial_id).isdigit() else zlib.crc32(
            str(trial.trial_id).encode())
        losses = self._train(child, x, y, self.steps_per_trial, salt)
        if not np.all(np.isfinite(losses)):
            raise kt.errors.FailedTrialError(f"non-finite training loss for child "
                                             f"{self.space.to_string(child)}")
        return self.evaluate_child(child, *validation_data)

    def load_model(self, trial):
        """A standalone, compiled Keras model of the trial's child (current shared weights)."""
        child = self.space.child_from_values(trial.hyperparameters.values)
        model = self.supernet.child_model(child, inherit_weights=True,
                                          name=f"child_{trial.trial_id}")
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def save_model(self, trial_id, model, step=0):
        """Nothing per trial: every child lives in the shared supernet (saved in `save`)."""

    # --- state --------------------------------------------------------------------------
    def _checkpoint_prefix(self):
        return os.path.join(self.project_dir, f"supernet_{self.tuner_id}", "ckpt")

    def save(self):
        super().save()
        self.checkpoint.write(self._checkpoint_prefix())

    def reload(self):
        super().reload()
        prefix = self._checkpoint_prefix()
        if os.path.exists(prefix + ".index"):
            self.checkpoint.read(prefix).assert_consumed()
