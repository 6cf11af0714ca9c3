"""Search quality at equal wall-clock budget: each method searches (or tunes) for
`budget_s`, then its best child is retrained; one row per (method, dataset, seed).

Curves ("best validation accuracy against wall time") are, for weight-sharing methods,
the best validation-batch accuracy of any child scored with shared weights so far, then
the retrained child's validation accuracy at the end (joint searches: only that end point,
their controller reward is −L_val, not an accuracy); for keras-tuner oracles, the best
trial's validation accuracy so far. `seconds_to_target` is the first time a curve reaches
the target (0.97 on MNIST-1D).
"""
from __future__ import annotations

import dataclasses
import os
import re
import time

import keras
import numpy as np

from tf_enas import data
from tf_enas.benchmarks import tuner_compare
from tf_enas.controller import ControllerConfig
from tf_enas.retrain import RetrainConfig, train
from tf_enas.search import RandomSearch, Search, SearchConfig

TARGET = 0.97
PAPER_ROWS = {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91,
              "human": 0.96}  # MNIST-1D paper's test accuracies (Greydanus 2020)


def hand_designed_cnn(splits, seed: int, epochs: int = 60) -> dict:
    """5 × (Conv(64, 3)–BN–ReLU), global average pool, dense; AdamW, cosine decay."""
    keras.utils.set_random_seed(seed)
    conv = keras.layers.Conv1D if splits.spatial_rank == 1 else keras.layers.Conv2D
    layers = [keras.Input(splits.input_shape)]
    for _ in range(5):
        layers += [conv(64, 3, padding="same", use_bias=False),
                   keras.layers.BatchNormalization(), keras.layers.ReLU()]
    pool = (keras.layers.GlobalAveragePooling1D if splits.spatial_rank == 1
            else keras.layers.GlobalAveragePooling2D)
    model = keras.Sequential(layers + [pool(), keras.layers.Dense(splits.num_classes)])
    return train(model, splits, RetrainConfig(epochs=epochs, learning_rate=3e-3,
                                              weight_decay=5e-2))


def search_config(dataset: str, seed: int, budget_s: float, quick: bool,
                  retrain_optimizer: str = "adamw", **overrides):
    config = SearchConfig(
        dataset=dataset, seed=seed, val_fraction=0.1 if dataset == "mnist1d" else 0.2,
        num_layers=2 if quick else 6, width=8 if quick else 64,
        batch_size=128 if dataset == "mnist1d" else 64, epochs=10_000, time_budget_s=budget_s,
        controller_steps=5 if quick else 20, derive_samples=8 if quick else 64,
        controller=ControllerConfig(lstm_size=32 if quick else 64),
        retrain=RetrainConfig(epochs=3 if quick else 60, optimizer=retrain_optimizer,
                              batch_size=128 if dataset == "mnist1d" else 64))
    return dataclasses.replace(config, **overrides)


def _weight_sharing_row(cls, method, config, output_dir) -> dict:
    start = time.time()
    search = cls(config, output_dir, verbose=0)
    result = search.run()
    wall = time.time() - start
    curve, t, best = [], 0.0, 0.0
    if config.reward == "accuracy":  # a −L_val reward is not an accuracy
        for h in result["history"]:
            t += h["seconds"]
            best = max(best, h.get("controller/best_reward", h["controller/reward"]))
            curve.append((t, best))
    curve.append((wall, max(best, result["val_accuracy"])))
    return {"method": method, "val_accuracy": result["val_accuracy"],
            "test_accuracy": result["test_accuracy"], "wall_seconds": wall,
            "evaluated": len(result["history"]) * (
                search.steps_per_epoch + config.controller_steps * config.controller_batch),
            "curve": curve, "architecture": result["architecture"]}


# The joint flagfiles' settings (flags/mnist1d_joint*.cfg): SGD η, μ, λ continuous.
_JOINT = dict(retrain_optimizer="sgd", reward="loss",
              continuous=("learning_rate", "momentum", "weight_decay"),
              ranges={"learning_rate": (0.003, 0.3), "momentum": (0.5, 0.98),
                      "weight_decay": (1e-6, 1e-3)},
              controller_steps=10, lookahead_steps=1, lookahead_batch_size=64)


def weight_sharing_methods() -> dict:
    """method name → (Search class, config overrides)."""
    joint = lambda **kw: (Search, _JOINT | kw)
    return {
        "random (shared weights)": (RandomSearch, {}),
        "ENAS (architecture only)": (Search, {}),
        "joint, response=none": joint(response="none"),
        "joint + unrolled": joint(response="unrolled", response_every=3),
        "joint + ift": joint(response="ift", response_every=10, curvature="gauss_newton",
                             gauss_newton_jvp="central_difference", cg_iterations=10,
                             cg_tol=0.5, cg_damping=0.1),
    }


def tuner_rows(dataset: str, seed: int, budget_s: float, quick: bool, directory: str):
    """keras-tuner's RandomSearch, Hyperband, BayesianOptimization and tf_enas's
    PolicyOracle on tuner_compare's CNN HyperModel, budget_s seconds each (trials train
    from scratch; the test accuracy is the best trial's model, not a retrain); quick:
    PolicyOracle and RandomSearch only."""
    names = {"PolicyOracle": "tf_enas PolicyOracle (keras-tuner)"}
    oracles = ("PolicyOracle", "RandomSearch") if quick else tuner_compare.ORACLES
    return [{"method": names.get(r["oracle"], f"keras-tuner {r['oracle']}"),
             "dataset": dataset, "seed": seed, "test_accuracy": r["test_accuracy"],
             "val_accuracy": r["best_val_accuracy"], "wall_seconds": r["seconds"],
             "evaluated": r["trials"], "curve": r["curve"]}
            for r in tuner_compare.compare(float(budget_s), quick=quick, seed=seed,
                                           dataset=dataset, directory=directory,
                                           oracles=oracles)]


KEY = ("dataset", "seed", "method")  # one row per key; shards.merge joins shards by it


def jobs(datasets, seeds) -> list[tuple[str, int]]:
    """The section's independent jobs, (dataset, seed) in order (a shard takes some)."""
    return [(d, int(s)) for d in datasets for s in seeds]


def run(job_list, budget_s: float, output_dir: str, quick: bool = False,
        on_row=None) -> list[dict]:
    """The hand-designed CNN, every weight-sharing method and the keras-tuner oracles on
    each (dataset, seed) job; on_row(rows so far) after every row."""
    rows = []

    def add(row):
        row["budget_s"] = float(budget_s)
        row["seconds_to_target"] = seconds_to_target(row.get("curve", []))
        rows.append(row)
        if on_row:
            on_row(list(rows))

    for dataset, seed in job_list:
        splits = data.load(dataset, seed, 0.1 if dataset == "mnist1d" else 0.2)
        start = time.time()
        epochs = 3 if quick else 60
        hand = hand_designed_cnn(splits, seed, epochs=epochs)
        add({"method": f"hand-designed CNN (5×conv-BN-ReLU, {epochs} ep.)",
             "dataset": dataset, "seed": seed, **hand,
             "wall_seconds": time.time() - start, "evaluated": 1, "curve": []})
        for method, (cls, overrides) in weight_sharing_methods().items():
            if quick and overrides.get("response", "none") != "none":
                continue  # traced for 30 s or more; the cost section's quick run times it
            config = search_config(dataset, seed, budget_s, quick, **overrides)
            slug = re.sub(r"\W+", "_", method)
            d = os.path.join(output_dir, f"{dataset}_{seed}_{slug}")
            add({"dataset": dataset, "seed": seed,
                 **_weight_sharing_row(cls, method, config, d)})
        for row in tuner_rows(dataset, seed, budget_s, quick,
                              os.path.join(output_dir, f"{dataset}_{seed}_tuners")):
            add(row)
    return rows


def seconds_to_target(curve, target: float = TARGET):
    """The first time of a [(seconds, best accuracy)] curve at or above target (None: never)."""
    return next((t for t, v in curve if v >= target), None)


def markdown(rows: list[dict]) -> str:
    out = ["| dataset | method | test acc. | best val acc. | time to 97% val | children/trials "
           "| wall s | seeds |", "|---|---|---|---|---|---|---|---|"]
    out += [f"| mnist1d | MNIST-1D paper: {k} | {v:.0%} | | | | | |"
            for k, v in PAPER_ROWS.items()]
    groups = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    names = list(weight_sharing_methods())
    order = lambda m: ((0, 0) if m.startswith("hand-designed") else
                       (1, names.index(m)) if m in names else (2, m))  # then the tuners
    key = lambda g: (g[0][0] != "mnist1d", g[0][0], order(g[0][1]))  # beside the paper rows
    for (dataset, method), rs in sorted(groups.items(), key=key):
        test = np.array([r["test_accuracy"] for r in rs])
        val = np.array([r["val_accuracy"] for r in rs])
        reached = [r["seconds_to_target"] for r in rs if r["seconds_to_target"] is not None]
        to_target = (f"{np.mean(reached):.0f} s ({len(reached)}/{len(rs)})" if reached
                     else "not reached")
        out.append(f"| {dataset} | {method} | {test.mean():.4f} ± {test.std():.4f} | "
                   f"{val.mean():.4f} | {to_target} | "
                   f"{np.mean([r['evaluated'] for r in rs]):.0f} | "
                   f"{np.mean([r['wall_seconds'] for r in rs]):.0f} | {len(rs)} |")
    return "\n".join(out)


def plot(rows: list[dict], path: str) -> None:
    """Best validation accuracy against wall-clock time, one line per method (first seed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        seen = set()
        for r in rows:
            if r["dataset"] != dataset or not r.get("curve") or r["method"] in seen:
                continue
            seen.add(r["method"])
            t, v = zip(*r["curve"])
            ax.step(t, v, where="post", label=r["method"],
                    marker="o" if len(t) == 1 else None)  # joint searches: one point
        ax.axhline(TARGET, color="gray", ls=":")
        ax.set(title=dataset, xlabel="wall-clock seconds", ylabel="best validation accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
