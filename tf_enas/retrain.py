"""Training a found child from scratch (after a search, and in `tf-enas-train`)."""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from tf_enas.data import Splits
from tf_enas.decay_groups import RESULT_KEYS, group_key, is_decayed
from tf_enas.supernet.micro import DropPathSchedule

OPTIMIZERS = ("adamw", "sgd")


@dataclasses.dataclass
class RetrainConfig:
    """How a child is trained from scratch: `optimizer` with a cosine-decayed learning rate.

    learning_rate, momentum and weight_decay are overridden by the child's own choices of
    the same names when the search space has them (the joint search picks them), and
    "l2_per_layer" ({layer group: λ}) or "l2_per_tensor" ({kernel path from its layer group:
    λ}) adds the L2 terms of the search's loss (decay_groups.py).
    """

    epochs: int = 60
    batch_size: int = 128
    optimizer: str = "adamw"
    learning_rate: float = 3e-3
    weight_decay: float = 5e-2
    momentum: float = 0.9
    width: int | None = None      # None: the supernet's width
    dropout: float = 0.0
    num_cells: int | None = None  # micro: normal cells per stage; None: the search's
    drop_path: float = 0.0        # micro: DropPath's final rate on every op but identity
    include_val: bool = False     # train on train + validation (no val_accuracy then)

    MICRO_ONLY = {"num_cells": "--retrain_num_cells", "drop_path": "--retrain_drop_path"}

    def validate(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"retrain optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for k in ("epochs", "batch_size"):
            if getattr(self, k) < 1:
                raise ValueError(f"retrain {k} must be >= 1, got {getattr(self, k)}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError("retrain learning_rate must be > 0 and weight_decay >= 0")
        if self.num_cells is not None and self.num_cells < 1:
            raise ValueError(f"retrain num_cells must be >= 1 or None, got {self.num_cells}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"retrain dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"retrain drop_path must be in [0, 1), got {self.drop_path}")
        return self

    def check_space(self, space: str):
        """Raises ValueError when a micro-only setting is set for another space."""
        for name, flag in self.MICRO_ONLY.items():
            if getattr(self, name) and space != "micro":
                raise ValueError(f"retrain {name} ({flag}) is for the micro space's cells; "
                                 f"space={space} has none")

    def micro_kwargs(self) -> dict:
        """The micro-only settings that are set, as MicroSupernet.child_model arguments."""
        return {name: getattr(self, name) for name in self.MICRO_ONLY if getattr(self, name)}


def make_optimizer(config: RetrainConfig, steps: int, hyperparameters: dict | None = None):
    """AdamW (decoupled decay) or SGD-Nesterov (decoupled decay) with cosine decay to 0."""
    hp = hyperparameters or {}
    lr = float(hp.get("learning_rate", config.learning_rate))
    wd = float(hp.get("weight_decay", config.weight_decay))
    momentum = float(hp.get("momentum", config.momentum))
    schedule = keras.optimizers.schedules.CosineDecay(lr, max(1, steps))
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=wd)
    return keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True, weight_decay=wd)


def add_l2(model: keras.Model, l2: dict, per: str) -> None:
    """Adds λ_g‖W‖² to the loss for every kernel W, g its key under `per` ("layer" or
    "tensor", decay_groups.group_key) and l2 = {g: λ_g}."""
    for v in model.trainable_variables:
        if is_decayed(v):
            key = group_key(per, v.path)
            if key not in l2:
                raise ValueError(f"{RESULT_KEYS[per]} has no entry for {v.path!r} (key "
                                 f"{key!r}); it has {sorted(l2)}")
            v.regularizer = keras.regularizers.L2(float(l2[key]))


def train(model: keras.Model, splits: Splits, config: RetrainConfig,
          hyperparameters: dict | None = None, verbose: int = 0,
          callbacks=()) -> dict:
    """Trains `model` on splits' train set (and validation set, with include_val); returns
    val accuracy (None with include_val: nothing held out), test accuracy and seconds;
    with per-step targets also the test perplexity exp(mean cross-entropy per step)."""
    config.validate()
    for per, name in RESULT_KEYS.items():
        if (hyperparameters or {}).get(name):
            add_l2(model, hyperparameters[name], per)
    x, y = splits.x_train, splits.y_train
    if config.include_val:
        x, y = np.concatenate([x, splits.x_val]), np.concatenate([y, splits.y_val])
    steps = config.epochs * int(np.ceil(len(x) / config.batch_size))
    model.compile(
        optimizer=make_optimizer(config, steps, hyperparameters),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    start = time.time()
    model.fit(x, y, batch_size=config.batch_size,
              epochs=config.epochs, verbose=verbose,
              callbacks=[DropPathSchedule(config.epochs), *callbacks])
    seconds = time.time() - start
    val_acc = (None if config.include_val else
               float(model.evaluate(splits.x_val, splits.y_val, batch_size=512, verbose=0)[1]))
    _, test_acc = model.evaluate(splits.x_test, splits.y_test, batch_size=512, verbose=0)
    metrics = {"val_accuracy": val_acc, "test_accuracy": float(test_acc),
               "train_seconds": seconds}
    if splits.sequence_targets:  # the loss evaluate gives includes any L2 penalty
        logits = model.predict(splits.x_test, batch_size=512, verbose=0)
        metrics["test_perplexity"] = float(np.exp(np.mean(
            keras.losses.sparse_categorical_crossentropy(splits.y_test, logits,
                                                         from_logits=True))))
    return metrics
