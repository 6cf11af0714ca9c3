"""The search: shared-weight steps ⇄ controller steps, then derive and retrain.

One epoch = a shared-weight phase (each step samples a child from π_φ and trains the
supernet on one batch: SGD-Nesterov, cosine-with-restarts learning rate, L2, global-norm
clipping) and a controller phase (each step samples `controller_batch` children, rewards
each with its accuracy on one validation batch, and takes one REINFORCE step). After the
epochs (or the time budget), derive samples `derive_samples` children, scores each on the
whole validation set and keeps the best; that child is retrained from scratch.

Everything that changes during a search (supernet, controller, both optimizers, the RNG
state, the epoch counter, the elapsed time and the history) is one tf.train.Checkpoint,
written after every epoch; `run()` resumes from the last one in `output_dir`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tf_enas import data as data_lib
from tf_enas import files
from tf_enas import retrain as retrain_lib
from tf_enas.controller import Controller, ControllerConfig
from tf_enas.space import OPS, SearchSpace
from tf_enas.supernet import Supernet


@dataclasses.dataclass
class SearchConfig:
    """Everything a search needs; the binaries fill it from flags."""

    dataset: str = "mnist1d"
    dataset_path: str | None = None
    num_samples: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    # search space
    num_layers: int = 6
    ops: tuple = OPS
    choices: dict = dataclasses.field(default_factory=dict)
    # supernet and its training
    width: int = 64
    batch_size: int = 128
    lr_max: float = 0.05
    lr_min: float = 0.0005
    lr_restart_epochs: int = 10
    momentum: float = 0.9
    l2: float = 2.5e-4
    grad_clip_norm: float = 5.0
    # controller
    controller: ControllerConfig = dataclasses.field(default_factory=ControllerConfig)
    controller_steps: int = 20
    controller_batch: int = 8
    val_batch_size: int = 256
    # schedule
    epochs: int = 100
    time_budget_s: float | None = None
    derive_samples: int = 64
    retrain: retrain_lib.RetrainConfig = dataclasses.field(
        default_factory=retrain_lib.RetrainConfig)

    def validate(self):
        positive = ("num_layers", "width", "batch_size", "controller_steps", "controller_batch",
                    "val_batch_size", "epochs", "derive_samples", "lr_restart_epochs")
        for k in positive:
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if not 0 < self.lr_min <= self.lr_max:
            raise ValueError(f"need 0 < lr_min <= lr_max, got lr_min={self.lr_min}, "
                             f"lr_max={self.lr_max}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.l2 < 0 or self.grad_clip_norm <= 0:
            raise ValueError("l2 must be >= 0 and grad_clip_norm > 0")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be > 0, got {self.time_budget_s}")
        self.controller.validate()
        self.retrain.validate()
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"ops": list(self.ops)}


class Search:
    """A resumable ENAS search over `config`, writing into `output_dir`."""

    def __init__(self, config: SearchConfig, output_dir: str, splits=None, verbose: int = 1):
        self.config = config.validate()
        self.output_dir = output_dir
        self.verbose = verbose
        os.makedirs(output_dir, exist_ok=True)
        c = config
        self.splits = splits or data_lib.load(c.dataset, c.seed, c.val_fraction,
                                              path=c.dataset_path, num_samples=c.num_samples)
        self.space = SearchSpace(c.num_layers, c.ops, c.choices)
        keras.utils.set_random_seed(c.seed)
        self.supernet = Supernet(self.space, self.splits.input_shape, self.splits.num_classes,
                                 width=c.width)
        self.controller = Controller(self.space, c.controller, seed=c.seed)
        self.steps_per_epoch = len(self.splits.x_train) // c.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size {c.batch_size} is larger than the training set "
                             f"({len(self.splits.x_train)} examples)")
        self.optimizer = keras.optimizers.SGD(c.lr_max, momentum=c.momentum, nesterov=True)
        self.optimizer.build(self.supernet.trainable_variables)
        self.schedule = keras.optimizers.schedules.CosineDecayRestarts(
            1.0, c.lr_restart_epochs * self.steps_per_epoch, t_mul=2.0,
            alpha=c.lr_min / c.lr_max)
        self._x_train = tf.constant(self.splits.x_train)
        self._y_train = tf.constant(self.splits.y_train)
        self._x_val = tf.constant(self.splits.x_val)
        self._y_val = tf.constant(self.splits.y_val)
        self._l2_vars = [v for v in self.supernet.trainable_variables
                         if "kernel" in v.path or "depthwise" in v.path or "pointwise" in v.path]
        self._grid = {k: tf.constant(np.asarray(v, np.float32)) for k, v in c.choices.items()
                      if k in ("learning_rate", "weight_decay")}
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="elapsed")
        self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped")
        self.history_json = tf.Variable("[]", dtype=tf.string, trainable=False, name="history")
        self.checkpoint = tf.train.Checkpoint(
            supernet=self.supernet, optimizer=self.optimizer, controller=self.controller,
            epoch=self.epoch, elapsed=self.elapsed, skipped=self.skipped_steps,
            history=self.history_json)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(output_dir, "checkpoints"), max_to_keep=2)
        self.train_traces = 0
        self.writer = tf.summary.create_file_writer(os.path.join(output_dir, "tensorboard"))

    # --- hyperparameters of a sampled child --------------------------------------------
    def child_hparams(self, child):
        """(learning-rate multiplier base, L2) for `child`: its own choices where the space
        has them, else the config's lr_max and l2."""
        c = self.config
        lr = c.lr_max if "learning_rate" not in self._grid else tf.gather(
            self._grid["learning_rate"], child[self.space.choice_index["learning_rate"]])
        l2 = c.l2 if "weight_decay" not in self._grid else tf.gather(
            self._grid["weight_decay"], child[self.space.choice_index["weight_decay"]])
        return lr, l2

    def sample_children(self, n):
        """n children from the policy π_φ: int32 [n, len(space)]."""
        return self.controller.sample(n)

    # --- the two phases ------------------------------------------------------------------

    @tf.function(autograph=False)
    def train_step(self, x, y):
        """Samples a child and trains the shared weights on (x, y); non-finite steps are
        skipped (weights, BN statistics and optimizer untouched) and counted."""
        self.train_traces += 1  # runs at trace time only
        child = self.sample_children(1)[0]
        lr, l2 = self.child_hparams(child)
        stats = self.supernet.non_trainable_variables
        saved = [tf.identity(v.value) for v in stats]
        weights = self.supernet.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.supernet(x, child, training=True)
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            loss = ce + l2 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self._l2_vars])
        grads = tape.gradient(loss, weights)
        grads, norm = tf.clip_by_global_norm(grads, self.config.grad_clip_norm)
        finite = tf.math.is_finite(loss) & tf.math.is_finite(norm)

        def apply():
            self.optimizer.learning_rate.assign(
                lr * self.schedule(self.optimizer.iterations))
            self.optimizer.apply(grads, weights)
            return tf.constant(0, tf.int64)

        def skip():  # undo the BN statistics this step's forward pass moved
            for v, t in zip(stats, saved):
                v.assign(t)
            return tf.constant(1, tf.int64)

        skipped = tf.cond(finite, apply, skip)
        self.skipped_steps.assign_add(skipped)
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y),
                                     tf.float32))
        return {"train/loss": ce, "train/accuracy": acc, "train/grad_norm": norm,
                "train/lr": tf.identity(self.optimizer.learning_rate.value)}

    @tf.function(autograph=False)
    def evaluate_children(self, children, x, y):
        """Accuracy of each child on (x, y) with batch statistics, no state change → [B];
        a child with non-finite logits scores 0 (the worst reward)."""
        def score(child):
            logits = self.supernet(x, child, training=True, update_stats=False)
            pred = tf.argmax(logits, -1, output_type=tf.int32)
            acc = tf.reduce_mean(tf.cast(tf.equal(pred, y), tf.float32))
            return tf.where(tf.reduce_all(tf.math.is_finite(logits)), acc, 0.0)

        return tf.map_fn(score, children, fn_output_signature=tf.float32)

    @tf.function(autograph=False)
    def controller_step(self, x, y):
        """Samples controller_batch children, rewards = validation-batch accuracy, REINFORCE."""
        children = self.sample_children(self.config.controller_batch)
        rewards = self.evaluate_children(children, x, y)
        return self.controller.update(children, rewards) | {
            "controller/best_reward": tf.reduce_max(rewards)}

    # --- loop ------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int, n: int, size: int, count: int, salt: int):
        """`count` index batches of `size` from a permutation seeded by (seed, epoch, salt),
        so a resumed run draws the same batches."""
        rng = np.random.default_rng([self.config.seed, epoch, salt])
        idx = np.concatenate([rng.permutation(n) for _ in range(1 + count * size // n)])
        return idx[: count * size].reshape(count, size)

    @property
    def history(self) -> list:
        return json.loads(self.history_json.numpy().decode())

    def _log(self, logs: dict, step: int):
        with self.writer.as_default(step=step):
            for k, v in logs.items():
                tf.summary.scalar(k, v)

    def search(self) -> list:
        """Runs (or resumes) the search epochs; returns the history."""
        c = self.config
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_consumed()
            if self.verbose:
                print(f"resumed from {self.manager.latest_checkpoint} at epoch "
                      f"{int(self.epoch.numpy())}")
        history = self.history
        progbar = keras.utils.Progbar(c.epochs, verbose=self.verbose,
                                      stateful_metrics=["reward", "val_acc", "entropy"])
        progbar.update(int(self.epoch.numpy()))
        n_val = min(c.val_batch_size, len(self.splits.x_val))
        while self.epoch.numpy() < c.epochs:
            epoch = int(self.epoch.numpy())
            last = history[-1]["seconds"] if history else 0.0
            if c.time_budget_s and self.elapsed.numpy() + last > c.time_budget_s:
                break
            start = time.time()
            train_logs = []
            for b in self._epoch_batches(epoch, len(self.splits.x_train), c.batch_size,
                                         self.steps_per_epoch, 0):
                train_logs.append(self.train_step(tf.gather(self._x_train, b),
                                                  tf.gather(self._y_train, b)))
            ctrl_logs = []
            for b in self._epoch_batches(epoch, len(self.splits.x_val), n_val,
                                         c.controller_steps, 1):
                ctrl_logs.append(self.controller_step(tf.gather(self._x_val, b),
                                                      tf.gather(self._y_val, b)))
            logs = {k: float(np.mean([l[k] for l in train_logs])) for k in train_logs[0]}
            logs |= {k: float(np.mean([l[k] for l in ctrl_logs])) for k in ctrl_logs[0]}
            logs["train/skipped_steps"] = int(self.skipped_steps.numpy())
            seconds = time.time() - start
            history.append({"epoch": epoch + 1, "seconds": seconds, **logs})
            self._log(logs, epoch + 1)
            self.epoch.assign_add(1)
            self.elapsed.assign_add(seconds)
            self.history_json.assign(json.dumps(history))
            self.manager.save(checkpoint_number=epoch + 1)
            progbar.update(epoch + 1, [("reward", logs["controller/reward"]),
                                       ("entropy", logs["controller/entropy"]),
                                       ("loss", logs["train/loss"])])
        self.writer.flush()
        return history

    def derive(self) -> dict:
        """Samples derive_samples children, scores each on the whole validation set, keeps
        the best: {"child", "architecture", "hyperparameters", "val_accuracy", "scores"}."""
        c = self.config
        children = self.sample_children(c.derive_samples)
        scores = self.evaluate_children(children, self._x_val, self._y_val).numpy()
        best = children[int(np.argmax(scores))].numpy()
        return {"child": self.space.to_string(best),
                "architecture": self.space.architecture(best),
                "hyperparameters": self.space.hyperparameters(best),
                "shared_weights_val_accuracy": float(np.max(scores)),
                "derive_mean_val_accuracy": float(np.mean(scores))}

    def run(self) -> dict:
        """Search (resuming), derive, retrain the best child from scratch; writes
        result.json and model.keras into output_dir and returns the result."""
        history = self.search()
        search_seconds = float(self.elapsed.numpy())
        derived_path = os.path.join(self.output_dir, "derived.json")
        if os.path.exists(derived_path):
            with open(derived_path) as f:
                derived = json.load(f)
        else:
            derived = self.derive()
            files.write_json(derived_path, derived)
        child = self.space.parse(derived["child"])
        c = self.config
        keras.utils.set_random_seed(c.seed)
        model = self.supernet.child_model(child, inherit_weights=False, width=c.retrain.width,
                                          dropout=c.retrain.dropout)
        metrics = retrain_lib.train(model, self.splits, c.retrain, derived["hyperparameters"],
                                    verbose=2 if self.verbose else 0)
        files.save_model(model, os.path.join(self.output_dir, "model.keras"))
        result = {
            "dataset": c.dataset, "seed": c.seed,
            "architecture": derived["child"],
            "layers": derived["architecture"],
            "hyperparameters": derived["hyperparameters"] | {
                "retrain": dataclasses.asdict(c.retrain)},
            "val_accuracy": metrics["val_accuracy"],
            "test_accuracy": metrics["test_accuracy"],
            "shared_weights_val_accuracy": derived["shared_weights_val_accuracy"],
            "search_seconds": search_seconds,
            "train_seconds": metrics["train_seconds"],
            "epochs": len(history),
            "skipped_steps": int(self.skipped_steps.numpy()),
            "params": int(model.count_params()),
            "history": history,
            "config": c.to_json(),
        }
        files.write_json(os.path.join(self.output_dir, "result.json"), result)
        return result


class RandomSearch(Search):
    """Weight-sharing random search: the same supernet and loop, but children are drawn
    uniformly (decision k ~ U{0..n_k−1}) and no controller is trained. The baseline that
    ENAS has to beat."""

    def sample_children(self, n):
        sizes = tf.constant([d.num_values for d in self.space.decisions], tf.float32)
        seed = tf.cast(self.controller.rng.make_seeds(1)[:, 0], tf.int32)
        u = tf.random.stateless_uniform([n, len(self.space)], seed)
        return tf.cast(tf.floor(u * sizes), tf.int32)

    @tf.function(autograph=False)
    def controller_step(self, x, y):
        """Scores children for the logs only; there is no policy to update."""
        rewards = self.evaluate_children(self.sample_children(self.config.controller_batch), x, y)
        zero = tf.constant(0.0)
        return {"controller/loss": zero, "controller/entropy": zero,
                "controller/reward": tf.reduce_mean(rewards), "controller/baseline": zero,
                "controller/best_reward": tf.reduce_max(rewards),
                "controller/grad_norm": zero}
