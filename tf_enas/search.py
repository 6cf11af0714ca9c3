"""The one search loop: shared-weight steps ⇄ controller steps, then derive and retrain.

One epoch = a shared-weight phase (each step samples a child (a, h) from π_φ and takes one
heavy-ball step of its own optimizer on the shared weights: learning rate η·s_t with s_t a
cosine-with-restarts multiplier, momentum μ, L2 λ, global-norm clipping) and a controller
phase (each step samples `controller_batch` children, evaluates them with the configured
response estimator and takes one controller step). The controller's objective is

    J_K(φ) = E_{(a,h)∼π_φ} L_val(a, w_K(a, h))

(w_K: K = `lookahead_steps` steps of the child's optimizer from the shared weights and
velocity; K = 0 with reward "accuracy" is ENAS). After the epochs (or the time budget),
derive scores `derive_samples` children on the whole validation set and keeps the best;
that child is retrained from scratch with its hyperparameters.

What is searched is configuration: grid `choices`, `continuous` decisions (which make the
controller a JointController) and the `response` estimator (tf_enas/response). Everything
that changes during a search is one tf.train.Checkpoint written after every epoch;
`run()` resumes from the last one in `output_dir`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tf_enas import checkpoints
from tf_enas import data as data_lib
from tf_enas import files
from tf_enas import hypergrad
from tf_enas import plots
from tf_enas import response as response_lib
from tf_enas import retrain as retrain_lib
from tf_enas.controller import Controller, ControllerConfig
from tf_enas.joint_controller import DEFAULTS, JointController
from tf_enas.objective import HEAVY_BALL, ChildObjective, Hyperparameters
from tf_enas.run_dir import RunDirectory, read_json_if_current, write_json_stamped, write_stamped
from tf_enas.space import OPS, SearchSpace
from tf_enas.supernet import Supernet
from tf_enas.cell_controller import make_controller as make_cell_controller
from tf_enas.cell_space import SPACES as CELL_SPACES
from tf_enas.supernet.micro import MicroSupernet
from tf_enas.supernet.rnn_cell import RNNSupernet

REWARDS = ("accuracy", "loss")
GROWABLE = ("epochs", "time_budget_s")  # may grow on a rerun; the derived child is then redone
SOLVERS = ("cg", "neumann", "exact")
SPACES = ("macro", "micro", "rnn_cell")


@dataclasses.dataclass
class SearchConfig:
    """Everything a search needs; the binaries fill it from flags."""

    dataset: str = "mnist1d"
    dataset_path: str | None = None
    num_samples: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    # search space: architecture, grid choices, continuous optimizer decisions
    num_layers: int = 6
    ops: tuple = OPS
    space: str = "macro"      # "macro", "micro" (ENAS's conv cells) or "rnn_cell"
    num_nodes: int = 5        # micro / rnn_cell: nodes per cell
    num_cells: int = 1        # micro: normal cells per stage (3 stages, 2 reductions)
    choices: dict = dataclasses.field(default_factory=dict)
    continuous: tuple = ()
    ranges: dict = dataclasses.field(default_factory=dict)  # name -> (low, high)
    # supernet and its training (defaults of what is not searched)
    width: int = 64
    batch_size: int = 128
    lr_max: float = 0.05
    lr_min: float = 0.0005
    lr_restart_epochs: int = 10
    momentum: float = 0.9
    l2: float = 2.5e-4
    grad_clip_norm: float = 5.0
    # controller and its objective
    controller: ControllerConfig = dataclasses.field(default_factory=ControllerConfig)
    controller_steps: int = 20
    controller_batch: int = 8
    val_batch_size: int = 256
    reward: str = "accuracy"          # "accuracy" or "loss" (R = −min(L_val, cap))
    reward_loss_cap: float = 5.0
    lookahead_steps: int = 0
    lookahead_batch_size: int = 64
    truncate: int = 0
    # response estimator
    response: str = "none"
    response_weight: float = 1.0
    response_every: int = 1
    solver: str = "cg"
    cg_iterations: int = 5
    cg_tol: float = 1e-2
    cg_damping: float = 1e-2
    neumann_alpha: float = 0.1
    # schedule
    epochs: int = 100
    time_budget_s: float | None = None
    derive_samples: int = 64
    retrain: retrain_lib.RetrainConfig = dataclasses.field(
        default_factory=retrain_lib.RetrainConfig)

    def validate(self):
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        positive = ("num_layers", "num_nodes", "num_cells", "width", "batch_size",
                    "controller_steps", "controller_batch",
                    "val_batch_size", "epochs", "derive_samples", "lr_restart_epochs",
                    "response_every", "lookahead_batch_size", "cg_iterations")
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
        for k, allowed in (("reward", REWARDS), ("response", tuple(response_lib.ESTIMATORS)),
                           ("solver", SOLVERS)):
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k} must be one of {allowed}, got {getattr(self, k)!r}")
        unknown = [k for k in self.continuous if k not in DEFAULTS]
        if unknown or len(set(self.continuous)) != len(self.continuous):
            raise ValueError(f"continuous must be distinct names from {tuple(DEFAULTS)}, got "
                             f"{list(self.continuous)}")
        bad = [k for k in self.ranges if k not in self.continuous]
        if bad:
            raise ValueError(f"ranges given for {bad}, which are not continuous decisions")
        clash = set(self.continuous) & set(self.choices)
        if clash:
            raise ValueError(f"{sorted(clash)} cannot be both a grid choice and continuous")
        if not 0 <= self.truncate <= self.lookahead_steps:
            raise ValueError(f"need 0 <= truncate <= lookahead_steps, got {self.truncate}")
        if self.cg_damping < 0 or self.reward_loss_cap <= 0 or self.response_weight < 0:
            raise ValueError("need cg_damping >= 0, reward_loss_cap > 0, response_weight >= 0")
        if self.response != "none" and self.reward != "loss":
            raise ValueError(f"response={self.response} estimates the gradient of L_val: it "
                             f"needs reward=loss, got reward={self.reward}")
        if self.response == "unrolled" and (self.lookahead_steps < 1 or not self.continuous):
            raise ValueError("response=unrolled needs lookahead_steps >= 1 and at least one "
                             "continuous decision (the response is ∂L_val(w_K)/∂h)")
        if self.response == "ift" and self.controller_batch < 4:
            raise ValueError(f"response=ift needs controller_batch >= 4, got "
                             f"{self.controller_batch}")
        if "learning_rate" in self.continuous and self.retrain.optimizer != "sgd":
            raise ValueError("the search picks an SGD learning rate: set the retrain "
                             "optimizer to sgd (--retrain_optimizer=sgd)")
        self.controller.validate()
        self.retrain.validate()
        self.decisions()
        return self

    def decisions(self) -> tuple:
        """The ContinuousDecisions, defaults with `ranges` applied."""
        out = []
        for k in self.continuous:
            d = DEFAULTS[k]
            if k in self.ranges:
                low, high = self.ranges[k]
                d = dataclasses.replace(d, low=float(low), high=float(high))
            out.append(d.validate())
        return tuple(out)

    def estimator(self):
        """The configured response estimator."""
        cls = response_lib.ESTIMATORS[self.response]
        if self.response != "ift":
            return cls(self.lookahead_steps, self.truncate)
        solve = hypergrad.make_solver(self.solver, self.cg_iterations, self.cg_tol,
                                      self.cg_damping, alpha=self.neumann_alpha)
        return cls(solve, self.lookahead_steps, self.truncate)

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"ops": list(self.ops)}


class Search:
    """A resumable search over `config`, writing into `output_dir`.

    The output dir belongs to one configuration and one process: it is locked while this
    object lives (until `close()` or the end of `run()`); a rerun resumes only when its
    config matches the stored config.json (or only grows GROWABLE fields), else raises
    ConfigMismatch naming each differing field; `overwrite=True` starts fresh. Derived,
    retrained and result files are stamped with the config and search epoch they came
    from, and a stale one is never reused.

    Override points: `build_space`, `build_supernet`, `build_controller`,
    `sample_children`, `update_policy`, `checkpoint_items` (extend with super()),
    `child_hyperparameters`.
    """

    def __init__(self, config: SearchConfig, output_dir: str, splits=None, verbose: int = 1,
                 overwrite: bool = False):
        self.config = cfg = config.validate()
        self.output_dir = output_dir
        self.verbose = verbose
        self.splits = (data_lib.validate_splits(splits) if splits is not None else
                       data_lib.load(cfg.dataset, cfg.seed, cfg.val_fraction,
                                     path=cfg.dataset_path, num_samples=cfg.num_samples))
        self.space = self.build_space()
        keras.utils.set_random_seed(cfg.seed)
        self.supernet = self.build_supernet()
        self.controller = self.build_controller()
        self.steps_per_epoch = len(self.splits.x_train) // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set "
                             f"({len(self.splits.x_train)} examples)")
        self.schedule = keras.optimizers.schedules.CosineDecayRestarts(
            1.0, cfg.lr_restart_epochs * self.steps_per_epoch, t_mul=2.0,
            alpha=cfg.lr_min / cfg.lr_max)
        weights = self.supernet.trainable_variables
        self.velocity = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"velocity_{i}")
                         for i, v in enumerate(weights)]
        self.shared_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                        name="shared_steps")
        self.objective = ChildObjective(self.supernet, self.child_hyperparameters,
                                        self.lr_scale)
        self.response = cfg.estimator()
        self.score_only = (self.response if cfg.response == "none" else
                           response_lib.ScoreFunction(cfg.lookahead_steps, cfg.truncate))
        self._x_train, self._y_train = tf.constant(self.splits.x_train), tf.constant(
            self.splits.y_train)
        self._x_val, self._y_val = tf.constant(self.splits.x_val), tf.constant(
            self.splits.y_val)
        self._grid = {k: tf.constant(np.asarray(v, np.float32)) for k, v in cfg.choices.items()
                      if k in Hyperparameters._fields}
        self._continuous = {d.name: i for i, d in enumerate(cfg.decisions())}
        self.batch_rng = tf.random.Generator.from_seed(cfg.seed + 7919)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="elapsed")
        self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped")
        self.history_json = tf.Variable("[]", dtype=tf.string, trainable=False, name="history")
        self.checkpoint = tf.train.Checkpoint(**self.checkpoint_items())
        self.run_dir = RunDirectory(output_dir, cfg.to_json(), GROWABLE, overwrite).open()
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(output_dir, "checkpoints"), max_to_keep=2)
        self.train_traces = 0
        self.writer = tf.summary.create_file_writer(os.path.join(output_dir, "tensorboard"))

    # --- override points ---------------------------------------------------------------
    def build_space(self) -> SearchSpace:
        if self.config.space != "macro":
            return CELL_SPACES[self.config.space](self.config.num_nodes, self.config.choices)
        return SearchSpace(self.config.num_layers, self.config.ops, self.config.choices)

    def build_supernet(self):
        if self.config.space == "micro":
            return MicroSupernet(self.space, self.splits.input_shape, self.splits.num_classes,
                                 width=self.config.width, num_cells=self.config.num_cells)
        if self.config.space == "rnn_cell":
            return RNNSupernet(self.space, self.splits.input_shape, self.splits.num_classes,
                               width=self.config.width)
        return Supernet(self.space, self.splits.input_shape, self.splits.num_classes,
                        width=self.config.width)

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
        return dict(supernet=self.supernet, velocity=self.velocity,
                    controller=self.controller, epoch=self.epoch, elapsed=self.elapsed,
                    skipped=self.skipped_steps, history=self.history_json,
                    shared_steps=self.shared_steps, batch_rng=self.batch_rng)

    def child_hyperparameters(self, child, values) -> Hyperparameters:
        """(η, μ, λ) of one child: its continuous value, else its grid choice, else the
        config's lr_max / momentum / l2."""
        cfg = self.config
        defaults = Hyperparameters(cfg.lr_max, cfg.momentum, cfg.l2)

        def pick(name):
            if name in self._continuous:
                return values[self._continuous[name]]
            if name in self._grid:
                return tf.gather(self._grid[name], child[self.space.choice_index[name]])
            return tf.constant(getattr(defaults, name), tf.float32)
        return Hyperparameters(*(pick(k) for k in Hyperparameters._fields))

    def lr_scale(self):
        """The cosine-with-restarts multiplier s_t at the current shared step."""
        return tf.cast(self.schedule(self.shared_steps), tf.float32)

    # --- the two phases ------------------------------------------------------------------
    @tf.function(autograph=False)
    def train_step(self, x, y):
        """Samples a child and takes one heavy-ball step of its own optimizer on (x, y); a
        step whose loss, gradient or new weights are non-finite is skipped (weights,
        velocity and BN statistics untouched) and counted."""
        self.train_traces += 1  # runs at trace time only
        children, values = self.sample_children(1)
        child, vals = children[0], values[0]
        hp = self.child_hyperparameters(child, vals)
        stats = self.supernet.non_trainable_variables
        saved = [tf.identity(v.value) for v in stats]
        weights = self.supernet.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.supernet(x, child, training=True)
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            params = [v.value for v in weights]
            loss = ce + hp.weight_decay * self.objective.penalty(params)
        grads = tape.gradient(loss, weights)
        grads, norm = tf.clip_by_global_norm(grads, self.config.grad_clip_norm)
        lr = hp.learning_rate * self.lr_scale()
        new_w, new_v = HEAVY_BALL.update(params, grads, [tf.convert_to_tensor(v) for v in self.velocity],
                                         self.shared_steps, {"learning_rate": lr,
                                                             "momentum": hp.momentum})
        finite = (tf.math.is_finite(loss) & tf.math.is_finite(norm)
                  & tf.math.is_finite(tf.linalg.global_norm(new_w))
                  & tf.math.is_finite(tf.linalg.global_norm(new_v)))

        def apply():
            for var, t in zip(weights + self.velocity, new_w + new_v):
                var.assign(t)
            self.shared_steps.assign_add(1)
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
                "train/lr": lr, "train/step_skipped": tf.cast(skipped, tf.float32)}

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

    def rewards(self, losses, accuracies):
        """R = accuracy (0 if non-finite) or −min(L_val, cap) (−cap if non-finite)."""
        if self.config.reward == "accuracy":
            return tf.where(tf.math.is_finite(losses), accuracies, 0.0)
        cap = self.config.reward_loss_cap
        return tf.where(tf.math.is_finite(losses), -tf.minimum(losses, cap), -cap)

    def controller_step(self, x, y):
        """One controller step on the validation batch (x, y): the response estimator on
        every response_every-th step, the score function on the others."""
        every = self.config.response_every
        is_response = int(self.controller.num_updates.numpy()) % every == 0
        estimator = self.response if is_response else self.score_only
        return self._controller_step(x, y, estimator) | {
            "response/computed": float(is_response and estimator is not self.score_only)}

    @tf.function(autograph=False)
    def _controller_step(self, x, y, estimator):
        cfg = self.config
        children, values = self.sample_children(cfg.controller_batch)
        idx = self.batch_rng.uniform([cfg.lookahead_batch_size], 0, len(self.splits.x_train),
                                     dtype=tf.int32)
        train_batch = (tf.gather(self._x_train, idx), tf.gather(self._y_train, idx))
        state = (self.objective.weights(), [tf.convert_to_tensor(v) for v in self.velocity])
        losses, accs, terms, logs = estimator.evaluate(self.objective, state, children,
                                                       values, (x, y), train_batch)
        rewards = self.rewards(losses, accs)
        # an added term computed on 1/every of the steps is scaled by every (unbiased)
        weight = cfg.response_weight * (cfg.response_every if estimator.adds_term else 1)
        logs = dict(logs) | self.update_policy(children, values, rewards, terms, weight)
        for name, i in self._continuous.items():
            logs[f"controller/{name}"] = tf.reduce_mean(values[:, i])
        return logs | {"controller/best_reward": tf.reduce_max(rewards),
                       "controller/val_accuracy": tf.reduce_mean(accs),
                       "controller/best_val_accuracy": tf.reduce_max(accs),
                       "controller/val_loss": tf.reduce_mean(tf.where(
                           tf.math.is_finite(losses), losses, cfg.reward_loss_cap))}

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

    def _scalar_logs(self, logs: dict) -> dict:
        """Vector logs (one entry per continuous decision) become one scalar per name."""
        names = list(self._continuous)
        out = {}
        for k, v in logs.items():
            v = np.asarray(v)
            if v.ndim:
                out |= {f"{k}/{n}": float(x) for n, x in zip(names, v)}
            else:
                out[k] = float(v)
        return out

    @staticmethod
    def _mean_logs(steps: list) -> dict:
        """Per key, the mean over the steps that logged it."""
        keys = dict.fromkeys(k for s in steps for k in s)
        return {k: float(np.mean([s[k] for s in steps if k in s])) for k in keys}

    def search(self) -> list:
        """Runs (or resumes) the search epochs; returns the history."""
        cfg = self.config
        restored = checkpoints.restore_readable(self.checkpoint, self.manager,
                                                assert_consumed=True)
        if restored and self.verbose:
            print(f"resumed from {restored} at epoch {int(self.epoch.numpy())}")
        history = self.history
        progbar = keras.utils.Progbar(cfg.epochs, verbose=self.verbose,
                                      stateful_metrics=["reward", "entropy", "loss"])
        progbar.update(int(self.epoch.numpy()))
        n_val = min(cfg.val_batch_size, len(self.splits.x_val))
        while self.epoch.numpy() < cfg.epochs:
            epoch = int(self.epoch.numpy())
            last = history[-1]["seconds"] if history else 0.0
            if cfg.time_budget_s and self.elapsed.numpy() + last > cfg.time_budget_s:
                break
            start = time.time()
            steps = []
            for b in self._epoch_batches(epoch, len(self.splits.x_train), cfg.batch_size,
                                         self.steps_per_epoch, 0):
                steps.append(self._scalar_logs(self.train_step(
                    tf.gather(self._x_train, b), tf.gather(self._y_train, b))))
            for b in self._epoch_batches(epoch, len(self.splits.x_val), n_val,
                                         cfg.controller_steps, 1):
                steps.append(self._scalar_logs(self.controller_step(
                    tf.gather(self._x_val, b), tf.gather(self._y_val, b))))
            logs = self._mean_logs(steps)
            logs["train/skipped_steps"] = int(self.skipped_steps.numpy())
            seconds = time.time() - start
            history.append({"epoch": epoch + 1, "seconds": seconds, **logs,
                            **plots.policy_snapshot(self.controller, [cfg.seed, epoch])})
            self._log(logs, epoch + 1)
            self.epoch.assign_add(1)
            self.elapsed.assign_add(seconds)
            self.history_json.assign(json.dumps(history))
            self.manager.save(checkpoint_number=epoch + 1)
            progbar.update(epoch + 1, [(k, logs.get(f"{p}/{m}", 0.0)) for k, p, m in (
                ("reward", "controller", "reward"), ("entropy", "controller", "entropy"),
                ("loss", "train", "loss"))])
        self.writer.flush()
        return history

    def derive(self) -> dict:
        """Samples derive_samples children, scores each on the whole validation set with
        the shared weights and keeps the best. Its continuous hyperparameters are the
        policy's medians given its architecture; the retrain's SGD gets the L2 coefficient
        λ as Keras's decoupled weight_decay 2λ/(1 − μ) (same decay under momentum μ)."""
        cfg = self.config
        children, _ = self.sample_children(cfg.derive_samples)
        scores = self.evaluate_children(children, self._x_val, self._y_val).numpy()
        best = children[int(np.argmax(scores))].numpy()
        searched = self.controller.medians(best) if self._continuous else {}
        hyperparameters = self.space.hyperparameters(best) | searched
        if "weight_decay" in searched:
            momentum = searched.get("momentum", cfg.momentum)
            hyperparameters["weight_decay"] = 2 * searched["weight_decay"] / (1 - momentum)
        if searched and "momentum" not in searched:
            hyperparameters["momentum"] = cfg.momentum
        return {"child": self.space.to_string(best),
                "architecture": self.space.architecture(best),
                "searched_hyperparameters": searched,
                "hyperparameters": hyperparameters,
                "shared_weights_val_accuracy": float(np.max(scores)),
                "derive_mean_val_accuracy": float(np.mean(scores))}

    def response_summary(self, history) -> dict:
        """Means over the epochs of the response logs (per response step where computed)."""
        keys = dict.fromkeys(k for h in history for k in h if k.startswith("response/"))
        return {"response": self.config.response, **{
            k.split("/", 1)[1]: float(np.mean([h[k] for h in history if k in h]))
            for k in keys}}

    def close(self):
        """Releases the output dir's lock."""
        self.run_dir.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self) -> dict:
        """Search (resuming), derive, retrain the best child from scratch (resuming its
        last finished epoch); writes result.json and model.keras into output_dir, returns
        the result and releases the output dir."""
        try:
            history = self.search()
            stamp = self.run_dir.stamp(epoch=int(self.epoch.numpy()))
            derived = read_json_if_current(self.run_dir.file("derived.json"), stamp)
            if derived is None:
                derived = self.derive()
                write_json_stamped(self.run_dir.file("derived.json"), derived, stamp)
            stamp |= {"child": derived["child"]}
            result = read_json_if_current(self.run_dir.file("result.json"), stamp)
            if result is None:
                result = self._retrain(derived, history, stamp)
            return result
        finally:
            self.close()

    def _retrain(self, derived, history, stamp) -> dict:
        cfg = self.config
        keras.utils.set_random_seed(cfg.seed)
        model = self.supernet.child_model(self.space.parse(derived["child"]),
                                          inherit_weights=False, width=cfg.retrain.width,
                                          dropout=cfg.retrain.dropout)
        resume = checkpoints.EpochCheckpoint(self.run_dir.file("retrain_checkpoints"), stamp)
        metrics = retrain_lib.train(model, self.splits, cfg.retrain, derived["hyperparameters"],
                                    verbose=2 if self.verbose else 0, callbacks=[resume])
        write_stamped(self.run_dir.file("model.keras"), lambda p: files.save_model(model, p),
                      stamp)
        result = {
            "dataset": cfg.dataset, "seed": cfg.seed,
            "architecture": derived["child"],
            "layers": derived["architecture"],
            "hyperparameters": derived["hyperparameters"] | {
                "retrain": dataclasses.asdict(cfg.retrain)},
            "optimizer_hyperparameters": derived["searched_hyperparameters"],
            "val_accuracy": metrics["val_accuracy"],
            "test_accuracy": metrics["test_accuracy"],
            "shared_weights_val_accuracy": derived["shared_weights_val_accuracy"],
            "search_seconds": float(self.elapsed.numpy()),
            "train_seconds": metrics["train_seconds"],
            "retrain_resumed_after_epoch": resume.resumed_from,
            "epochs": len(history),
            "skipped_steps": int(self.skipped_steps.numpy()),
            "params": int(model.count_params()),
            "response": self.response_summary(history),
            "history": history,
            "config": cfg.to_json(),
        }
        write_json_stamped(self.run_dir.file("result.json"), result, stamp)
        resume.delete()
        return result


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
