"""The one search loop: shared-weight steps ⇄ controller steps, then derive and retrain.

One epoch = a shared-weight phase (each step samples a child (a, h) from π_φ and takes one
heavy-ball step of its own optimizer on the shared weights: learning rate η·s_t with s_t a
cosine-with-restarts multiplier, momentum μ, L2 λ, global-norm clipping) and a controller
phase (each step samples `controller_batch` children, evaluates them with the configured
response estimator and takes one controller step). The controller's objective is

    J_K(φ) = E_{(a,h)∼π_φ} L_val(a, w_K(a, h))

(w_K: K = `lookahead_steps` steps of the child's optimizer from the shared weights and
velocity; K = 0 with reward "accuracy" is ENAS). After the epochs (or the time budget),
derive scores `derive_samples` children (those within `derive_max_params`, if set) on the
whole validation set (shared weights, or a `derive_proxy_epochs` retrain of each) and keeps
the best; that child is retrained from scratch with its hyperparameters.

What is searched is configuration: grid `choices`, `continuous` decisions (which make the
controller a JointController) and the `response` estimator (tf_enas/response). Everything
that changes during a search is one tf.train.Checkpoint written after every epoch;
`run()` resumes from the last one in `output_dir`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import keras
import tensorflow as tf

from tf_enas import checkpoints
from tf_enas import data as data_lib
from tf_enas import distribute
from tf_enas import epoch_logs
from tf_enas import found_child
from tf_enas import plots
from tf_enas import results
from tf_enas.cell_controller import make_controller as make_cell_controller
from tf_enas.cell_space import SPACES as CELL_SPACES
from tf_enas.controller import Controller
from tf_enas.controller_phase import ControllerPhase
from tf_enas.joint_controller import JointController
from tf_enas.objective import ChildHyperparameters
from tf_enas.run_dir import RunDirectory, read_json_if_current, write_json_stamped
from tf_enas.search_config import GROWABLE, SearchConfig
from tf_enas.shared_weights import SharedWeights
from tf_enas.space import SearchSpace


COLLECTIVE_TIMEOUT_S = 300.0  # a multi-worker run whose peer died fails after this


class Search:
    """A resumable search over `config`, writing into `output_dir`.

    The output dir belongs to one configuration and one process: it is locked while this
    object lives (until `close()` or the end of `run()`); a rerun resumes only when its
    config matches the stored config.json (or only grows GROWABLE fields), else raises
    ConfigMismatch naming each differing field; `overwrite=True` starts fresh. Derived,
    retrained and result files are stamped with the config and search epoch they came
    from, and a stale one is never reused.

    Override points: `build_space`, `build_supernet`, `build_controller`,
    `sample_children`, `update_policy`, `checkpoint_items` (extend with super()).
    """

    def __init__(self, config: SearchConfig, output_dir: str, splits=None, verbose: int = 1,
                 overwrite: bool = False):
        self.config = cfg = config.validate()
        self.output_dir = output_dir
        # first: a multi-worker strategy must exist before other TensorFlow ops run
        self.strategy = distribute.strategy(cfg.strategy, timeout_s=COLLECTIVE_TIMEOUT_S)
        self.is_chief = distribute.is_chief(self.strategy)
        self.verbose = verbose
        self.splits = (data_lib.as_splits(splits, cfg.seed, cfg.val_fraction)
                       if splits is not None else
                       data_lib.load(cfg.dataset, cfg.seed, cfg.val_fraction,
                                     path=cfg.dataset_path, num_samples=cfg.num_samples))
        self.space = self.build_space()
        replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:
            raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the "
                             f"{replicas} replicas of strategy={cfg.strategy}")
        keras.utils.set_random_seed(cfg.seed)
        with self.strategy.scope(), distribute.dtype_policy(cfg.mixed_precision):
            self.supernet = self.build_supernet()
        self.controller = self.build_controller()  # outside the strategy: one per process
        self.steps_per_epoch = len(self.splits.x_train) // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set "
                             f"({len(self.splits.x_train)} examples)")
        self.x_train, self.y_train = (tf.constant(self.splits.x_train),
                                      tf.constant(self.splits.y_train))
        self.x_val, self.y_val = tf.constant(self.splits.x_val), tf.constant(self.splits.y_val)
        with self.strategy.scope():
            self.shared = SharedWeights(self.supernet, cfg, self.steps_per_epoch,
                                        ChildHyperparameters(cfg, self.space))
        self.phase = ControllerPhase(cfg, self.controller, self.shared, self.x_train,
                                     self.y_train, self.sample_children, self.update_policy)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="elapsed")
        self.history_json = tf.Variable("[]", dtype=tf.string, trainable=False, name="history")
        self.checkpoint = tf.train.Checkpoint(**self.checkpoint_items())
        # a multi-worker run's other workers keep their own files in a scratch directory
        own_dir = output_dir if self.is_chief else tempfile.mkdtemp(prefix="tf_enas_worker_")
        self.run_dir = RunDirectory(own_dir, cfg.to_json(), GROWABLE,
                                    overwrite or not self.is_chief).open()
        self.checkpoints = distribute.CheckpointWriter(
            self.checkpoint, os.path.join(output_dir, "checkpoints"), self.strategy)
        self.manager = self.checkpoints.restore_manager
        self.writer = tf.summary.create_file_writer(os.path.join(own_dir, "tensorboard"))
        self._own_dir = None if self.is_chief else own_dir

    # --- override points ---------------------------------------------------------------
    def build_space(self) -> SearchSpace:
        if self.config.space != "macro":
            return CELL_SPACES[self.config.space](self.config.num_nodes, self.config.choices)
        return SearchSpace(self.config.num_layers, self.config.ops, self.config.choices)

    def build_supernet(self):
        cfg = self.config
        return found_child.build_supernet(cfg.space, self.space, self.splits.input_shape,
                                          self.splits.num_classes, cfg.width, cfg.num_cells,
                                          self.splits.sequence_targets)

    def build_controller(self) -> Controller:
        cfg = self.config
        if cfg.space != "macro":
            return make_cell_controller(self.space, cfg.decisions(), cfg.controller,
                                        seed=cfg.seed)
        if cfg.continuous:
            return JointController(self.space, cfg.decisions(), cfg.controller, seed=cfg.seed)
        return Controller(self.space, cfg.controller, seed=cfg.seed)

    def sample_children(self, n):
        """n children from the policy π_φ: (int32 [n, D], float32 values [n, C])."""
        return self.controller.sample(n)

    def update_policy(self, children, values, rewards, terms, weight) -> dict:
        """One controller step (Controller.update); returns its logs."""
        return self.controller.update(children, values, rewards, response=terms,
                                      response_weight=weight)

    def checkpoint_items(self) -> dict:
        """What the checkpoint holds (a subclass adds its own state with super())."""
        return dict(shared=self.shared, controller=self.controller,
                    batch_rng=self.phase.batch_rng, epoch=self.epoch, elapsed=self.elapsed,
                    history=self.history_json)

    # --- the two phases ------------------------------------------------------------------
    @tf.function(autograph=False)
    def train_step(self, x, y):
        """Samples a child and takes one step of its own optimizer (SharedWeights)."""
        children, values = self.sample_children(1)
        if self.config.jit_compile:  # XLA: a nested compiled function, default strategy only
            return self.shared.compiled_step(x, y, children[0], values[0])
        return distribute.run(self.strategy, self.shared.step,
                              (x, y, children[0], values[0]))

    def controller_step(self, x, y) -> dict:
        """One controller step on the validation batch (x, y) (ControllerPhase)."""
        return self.phase.step(x, y)

    # --- loop ------------------------------------------------------------------------------
    @property
    def history(self) -> list:
        return json.loads(self.history_json.numpy().decode())

    def search(self, time_budget_s: float | None = None) -> list:
        """Runs (or resumes) the search epochs until `epochs` or the time budget (default
        config.time_budget_s; a larger one continues the same search); returns the history."""
        cfg = self.config
        budget = time_budget_s or cfg.time_budget_s
        restored = checkpoints.restore_readable(self.checkpoint, self.manager,
                                                assert_consumed=True)
        if restored and self.verbose:
            print(f"resumed from {restored} at epoch {int(self.epoch.numpy())}")
        history = self.history
        progbar = keras.utils.Progbar(cfg.epochs, verbose=self.verbose,
                                      stateful_metrics=["reward", "entropy", "loss"])
        progbar.update(int(self.epoch.numpy()))
        n_val = min(cfg.val_batch_size, len(self.splits.x_val))
        names = [d.name for d in cfg.decisions()]
        while self.epoch.numpy() < cfg.epochs:
            epoch = int(self.epoch.numpy())
            last = history[-1]["seconds"] if history else 0.0
            if distribute.any_worker(self.strategy, bool(
                    budget and self.elapsed.numpy() + last > budget)):
                break
            start = time.time()
            steps = []
            for b in epoch_logs.batches(cfg.seed, epoch, len(self.splits.x_train),
                                        cfg.batch_size, self.steps_per_epoch, 0):
                steps.append(epoch_logs.scalars(self.train_step(
                    tf.gather(self.x_train, b), tf.gather(self.y_train, b)), names))
            for b in epoch_logs.batches(cfg.seed, epoch, len(self.splits.x_val), n_val,
                                        cfg.controller_steps, 1):
                steps.append(epoch_logs.scalars(self.controller_step(
                    tf.gather(self.x_val, b), tf.gather(self.y_val, b)), names))
            logs = epoch_logs.means(steps)
            logs["train/skipped_steps"] = int(self.shared.skipped_steps.numpy())
            seconds = time.time() - start
            history.append({"epoch": epoch + 1, "seconds": seconds, **logs,
                            **plots.policy_snapshot(self.controller, [cfg.seed, epoch])})
            epoch_logs.to_tensorboard(self.writer, logs, epoch + 1)
            self.epoch.assign_add(1)
            self.elapsed.assign_add(seconds)
            self.history_json.assign(json.dumps(history))
            self.checkpoints.save(epoch + 1)
            progbar.update(epoch + 1, [(k, logs.get(f"{p}/{m}", 0.0)) for k, p, m in (
                ("reward", "controller", "reward"), ("entropy", "controller", "entropy"),
                ("loss", "train", "loss"))])
        self.writer.flush()
        return history

    def close(self):
        """Releases the output dir's lock."""
        self.run_dir.close()
        self.checkpoints.close()
        if self._own_dir:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self) -> dict:
        """Search (resuming), derive, retrain the best child from scratch (resuming its
        last finished epoch); writes result.json and model.keras into output_dir, returns
        the result and releases the output dir. A multi-worker run's other workers return
        {} after the search (derive and retrain run on the chief)."""
        try:
            history = self.search()
            if not self.is_chief:  # derive and retrain are the chief's
                return {}
            stamp = self.run_dir.stamp(epoch=int(self.epoch.numpy()))
            derived = read_json_if_current(self.run_dir.file("derived.json"), stamp)
            if derived is None:
                derived = results.derive(self)
                write_json_stamped(self.run_dir.file("derived.json"), derived, stamp)
            stamp |= {"child": derived["child"]}
            result = read_json_if_current(self.run_dir.file("result.json"), stamp)
            if result is None:
                result = results.retrain(self, derived, history, stamp)
            return result
        finally:
            self.close()

class RandomSearch(Search):
    """Weight-sharing random search: the same supernet and loop, but children are drawn
    uniformly (decision k ~ U{0..n_k−1}, continuous z ~ U[T⁻¹(low), T⁻¹(high)]) and the
    policy is never updated. The baseline that ENAS has to beat."""

    def sample_children(self, n):
        sizes = tf.constant([d.num_values for d in self.space.decisions], tf.float32)
        seeds = tf.cast(self.controller.rng.make_seeds(2), tf.int32)
        u = tf.random.stateless_uniform([n, len(self.space)], seeds[:, 0])
        children = tf.cast(tf.floor(u * sizes), tf.int32)
        values = [d.from_z(d.center + d.half_range * tf.random.stateless_uniform(
            [n], seeds[:, 1] + i, -1.0, 1.0)) for i, d in enumerate(self.config.decisions())]
        return children, tf.stack(values, 1) if values else tf.zeros((n, 0))

    def update_policy(self, children, values, rewards, terms, weight) -> dict:
        return {"controller/reward": tf.reduce_mean(rewards)}
