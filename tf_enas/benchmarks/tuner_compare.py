"""PolicyOracle against keras-tuner's RandomSearch, Hyperband and BayesianOptimization.

``compare(budget, quick)`` tunes one HyperModel — a plain 1-D CNN on MNIST-1D (conv
layers, filters per layer, kernel size, batch norm, pooling, dense width, dropout, Adam
learning rate; the per-layer filters appear lazily, so the space grows during the search)
— with each oracle under the same budget: an int is a number of trials per oracle, a
float is wall-clock seconds per oracle (checked before each trial starts). Quick mode
(4 trials of 3 epochs on 2,000 MNIST-1D examples) is about 75 s of CPU on 2 cores. Every trial
trains from scratch for `epochs` epochs (Hyperband: its own schedule up to `epochs`) and
reports val_accuracy on the validation split; the best trial's model is evaluated once
on the test split. BayesianOptimization starts from 4 random points (keras-tuner's default,
3 × #hyperparameters, would make it random search within these budgets); Hyperband runs
as many iterations as the budget allows.

Reported per oracle: trials, seconds, best val accuracy, its test accuracy, the time to
reach the best, and the time to reach the *common* accuracy (the lowest of the oracles'
best val accuracies, which every oracle reached) — a time-to-accuracy figure.
``markdown(rows)`` renders the table.
"""
from __future__ import annotations

import itertools
import shutil
import tempfile
import time
import warnings

import keras
import keras_tuner as kt
import numpy as np

from tf_enas import data as data_lib
from tf_enas.tuner import PolicyOracle

COMMAND = ("python -c \"from tf_enas.benchmarks import tuner_compare as t; "
           "print(t.markdown(t.compare(quick=True)))\"")
ORACLES = ("PolicyOracle", "RandomSearch", "Hyperband", "BayesianOptimization")


class CNNHyperModel(kt.HyperModel):
    """A plain CNN classifier (Conv1D or Conv2D by the input's rank) whose shape and
    optimizer are hyperparameters."""

    def __init__(self, input_shape, num_classes):
        super().__init__(name="cnn1d")
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)

    def build(self, hp):
        inputs = keras.Input(self.input_shape)
        x = inputs
        conv, pool = ((keras.layers.Conv1D, keras.layers.MaxPooling1D)
                      if len(self.input_shape) == 2 else
                      (keras.layers.Conv2D, keras.layers.MaxPooling2D))
        kernel = hp.Choice("kernel_size", [3, 5, 7])
        batch_norm, pooling = hp.Boolean("batch_norm"), hp.Boolean("pooling")
        for i in range(hp.Int("conv_layers", 1, 3)):
            x = conv(hp.Choice(f"filters_{i}", [16, 32, 64]), kernel,
                                    padding="same", use_bias=not batch_norm)(x)
            if batch_norm:
                x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(x)
            if pooling:
                x = pool(2, padding="same")(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(hp.Int("dense_units", 32, 128, step=32), activation="relu")(x)
        x = keras.layers.Dropout(hp.Float("dropout", 0.0, 0.5, step=0.1))(x)
        model = keras.Model(inputs, keras.layers.Dense(self.num_classes)(x))
        model.compile(keras.optimizers.Adam(hp.Float("learning_rate", 1e-4, 1e-2,
                                                     sampling="log")),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, batch_size=128, **kwargs)


class _Budget:
    """Tuner mixin: stops creating trials once the budget is spent; logs each trial's end."""

    def _set_budget(self, trials=None, seconds=None):
        self._budget_trials, self._budget_seconds = trials, seconds
        self.events = []  # (seconds since search start, score or None)
        self.oracle.max_trials = int(trials) if trials else None  # seconds: checked below

    def on_search_begin(self):
        self._start = time.monotonic()
        super().on_search_begin()

    def pre_create_trial(self):
        if self._budget_seconds and time.monotonic() - self._start >= self._budget_seconds:
            self.oracle.max_trials = max(1, len(self.oracle.trials))
        super().pre_create_trial()

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        score = self.oracle.get_trial(trial.trial_id).score
        self.events.append((time.monotonic() - self._start,
                            None if score is None else float(score)))


def _tuner(name, hypermodel, directory, seed, epochs):
    common = dict(objective="val_accuracy", directory=directory, project_name=name,
                  overwrite=True, seed=seed)
    if name == "PolicyOracle":
        cls, kwargs = kt.Tuner, dict(oracle=PolicyOracle(objective="val_accuracy", seed=seed),
                                     directory=directory, project_name=name, overwrite=True)
    elif name == "RandomSearch":
        cls, kwargs = kt.RandomSearch, common
    elif name == "Hyperband":
        cls, kwargs = kt.Hyperband, dict(common, max_epochs=epochs, factor=3,
                                         hyperband_iterations=100)
    elif name == "BayesianOptimization":
        cls, kwargs = kt.BayesianOptimization, dict(common, num_initial_points=4)
    else:
        raise ValueError(f"unknown oracle {name!r}; known: {ORACLES}")
    budgeted = type(f"Budgeted{cls.__name__}", (_Budget, cls), {})
    return budgeted(hypermodel=hypermodel, **kwargs)


def _run(name, hypermodel, splits, directory, seed, epochs, budget) -> dict:
    """One oracle's search under the budget, and its best model on the test split."""
    tuner = _tuner(name, hypermodel, directory, seed, epochs)
    tuner._set_budget(trials=budget if isinstance(budget, int) else None,
                      seconds=budget if isinstance(budget, float) else None)
    start = time.monotonic()
    with warnings.catch_warnings():  # keras: optimizer slots not restored from checkpoints
        warnings.filterwarnings("ignore", message="Skipping variable loading")
        tuner.search(splits.x_train, splits.y_train, epochs=epochs,
                     validation_data=(splits.x_val, splits.y_val), verbose=0)
        seconds = time.monotonic() - start
        scored = [(t, s) for t, s in tuner.events if s is not None and np.isfinite(s)]
        best = max((s for _, s in scored), default=float("nan"))
        test_acc = float("nan")
        if scored:
            model = tuner.get_best_models(1)[0]
            test_acc = float(model.evaluate(splits.x_test, splits.y_test, verbose=0)[1])
    return {"oracle": name, "budget": budget, "epochs": epochs, "trials": len(tuner.events),
            "seconds": seconds, "best_val_accuracy": best, "test_accuracy": test_acc,
            "time_to_best_s": next((t for t, s in scored if s >= best), float("nan")),
            "_events": scored}


def _warm_up(hypermodel, splits):
    """Pays TensorFlow's one-time costs (first graph, first fit) before any oracle is
    timed, so that the first oracle in the list is not charged for them."""
    model = hypermodel.build(kt.HyperParameters())
    model.fit(splits.x_train[:256], splits.y_train[:256], epochs=1, batch_size=128,
              validation_data=(splits.x_val[:128], splits.y_val[:128]), verbose=0)
    model.evaluate(splits.x_test[:128], splits.y_test[:128], verbose=0)


def compare(budget: int | float | None = None, quick: bool = False, seed: int = 0,
            epochs: int | None = None, oracles=ORACLES, directory: str | None = None,
            num_samples: int | None = None, dataset: str = "mnist1d") -> list[dict]:
    """Runs every oracle on the same HyperModel and budget; one row (dict) per oracle.

    budget: int → trials per oracle, float → seconds per oracle (default: 4 trials quick,
    240 s full). epochs: per trial (default 3 quick, 10 full). num_samples: MNIST-1D
    examples, train + test (default 2000 quick, the dataset's 5000 full). dataset: any
    name of tf_enas.data (1-D inputs get Conv1D, 2-D inputs Conv2D). Each row's "curve"
    is [(seconds, best val accuracy so far)] at every trial's end.
    """
    if budget is None:
        budget = 4 if quick else 240.0
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
        raise ValueError(f"budget must be a positive int (trials) or float (seconds), "
                         f"got {budget!r}")
    unknown = [o for o in oracles if o not in ORACLES]
    if unknown or not oracles:
        raise ValueError(f"oracles must be a non-empty subset of {ORACLES}, got {oracles}")
    epochs = epochs or (3 if quick else 10)
    num_samples = num_samples or (2000 if quick else None)
    splits = data_lib.load(dataset, seed=seed, num_samples=num_samples)
    hypermodel = CNNHyperModel(splits.input_shape, splits.num_classes)
    tmp = directory or tempfile.mkdtemp(prefix="tuner_compare_")
    _warm_up(hypermodel, splits)
    rows = []
    try:
        for name in oracles:
            keras.utils.set_random_seed(seed)
            rows.append(_run(name, hypermodel, splits, tmp, seed, epochs, budget))
    finally:
        if directory is None:
            shutil.rmtree(tmp, ignore_errors=True)
    common = min((r["best_val_accuracy"] for r in rows if np.isfinite(r["best_val_accuracy"])),
                 default=float("nan"))
    for r in rows:
        r["common_val_accuracy"] = common
        events = r.pop("_events")
        r["time_to_common_s"] = next((t for t, s in events if s >= common), float("nan"))
        r["curve"] = list(zip((t for t, _ in events),
                              itertools.accumulate((s for _, s in events), max)))
    return rows


def markdown(rows: list[dict]) -> str:
    """The comparison as a Markdown table (one row per oracle)."""
    if not rows:
        return "(no results)"
    b = rows[0]["budget"]
    budget = f"{b} trials" if isinstance(b, int) else f"{b:g} s"
    lines = [f"Budget per oracle: {budget}; {rows[0]['epochs']} epochs per trial; "
             f"common accuracy = {rows[0]['common_val_accuracy']:.4f}.", "",
             "| oracle | trials | seconds | best val acc | test acc (best) | "
             "time to best (s) | time to common acc (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['oracle']} | {r['trials']} | {r['seconds']:.1f} | "
                     f"{r['best_val_accuracy']:.4f} | {r['test_accuracy']:.4f} | "
                     f"{r['time_to_best_s']:.1f} | {r['time_to_common_s']:.1f} |")
    return "\n".join(lines)
