"""Does a response estimator make the joint search more efficient? A task where the
optimizer's hyperparameters matter.

Task: MNIST-1D with 1,000 training examples (a stratified subset of its 4,000; 20% of them
held out for validation; the 1,000 test examples unchanged), a 4-layer width-32 macro
space, and wide ranges: learning rate 1e-3–1, momentum 0.5–0.98, weight decay 1e-6–1e-1.

Every method gets the same search budget T (seconds of search, tracing included) and is
derived and retrained (SGD-Nesterov, 60 epochs, the method's own hyperparameters) at
T/4, T/2 and T of the same run, so each run gives test accuracy against search time:

- ENAS: architecture only (K = 0, reward accuracy), the default optimizer (η 0.05, μ 0.9,
  L2 2.5e-4) in the search and the retrain;
- random: RandomSearch over architecture and hyperparameters (shared weights trained with
  uniform draws; the derived child gets the ranges' centers: a policy that never learns);
- joint, score function: K = 1, reward −L_val, REINFORCE only (response "none");
- joint + unrolled: the same objective, the pathwise gradient through the lookahead step;
- joint + IFT (Hessian / Gauss–Newton): the implicit response added (CG on (H + δI)u = g).

Reference: the best architecture found (best validation accuracy over the methods' final
points) retrained with the default optimizer and a grid of weight decays — what the
search should find. Rows: {method, seed, fraction, search_seconds, epochs, test_accuracy,
val_accuracy, hyperparameters, child, ...}.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time

import keras
import numpy as np

from tf_enas import data
from tf_enas import found_child
from tf_enas import results
from tf_enas.controller import ControllerConfig
from tf_enas.retrain import RetrainConfig, train
from tf_enas.search import RandomSearch, Search, SearchConfig

KEY = ("method", "seed", "fraction", "grid_weight_decay")  # rows' identity (shards.merge)
TRAIN_EXAMPLES = 1000
FRACTIONS = (0.25, 0.5, 1.0)
WEIGHT_DECAY_GRID = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
RANGES = {"learning_rate": (1e-3, 1.0), "momentum": (0.5, 0.98), "weight_decay": (1e-6, 1e-1)}
# the default optimizer as a retrain: SGD's L2 λ is Keras's decoupled decay 2λ/(1 − μ)
DEFAULT_RETRAIN = RetrainConfig(optimizer="sgd", learning_rate=0.05, momentum=0.9,
                                weight_decay=2 * 2.5e-4 / (1 - 0.9))


def splits(seed: int, train_examples: int = TRAIN_EXAMPLES) -> data.Splits:
    """MNIST-1D's test set unchanged; a stratified `train_examples` of its training pool,
    20% of them held out for validation."""
    full = data.load("mnist1d", seed, 0.1)
    x = np.concatenate([full.x_train, full.x_val])
    y = np.concatenate([full.y_train, full.y_val])
    rng = np.random.default_rng(seed)
    per_class = train_examples // full.num_classes
    keep = np.concatenate([rng.choice(np.flatnonzero(y == k), per_class, replace=False)
                           for k in range(full.num_classes)])
    return data.from_arrays(x[keep], y[keep], full.x_test, full.y_test,
                            name=f"mnist1d ({train_examples} training examples)",
                            seed=seed, val_fraction=0.2)


def base_config(seed: int, quick: bool = False) -> SearchConfig:
    return SearchConfig(
        dataset="mnist1d", seed=seed, num_layers=2 if quick else 4, width=8 if quick else 32,
        batch_size=64, controller_steps=5 if quick else 10, controller_batch=8,
        val_batch_size=200, derive_samples=8 if quick else 32, epochs=100_000,
        controller=ControllerConfig(lstm_size=32),
        retrain=dataclasses.replace(DEFAULT_RETRAIN, epochs=3 if quick else 60, batch_size=64))


_JOINT = dict(continuous=tuple(RANGES), ranges=RANGES, reward="loss", lookahead_steps=1,
              lookahead_batch_size=64)
_IFT = dict(response="ift", cg_iterations=20, cg_tol=0.2, cg_damping=0.1)


def methods() -> dict:
    """method name → (Search class, config overrides)."""
    return {
        "ENAS (default optimizer)": (Search, {}),
        "random (architecture + hyperparameters)": (RandomSearch, _JOINT),
        "joint, score function": (Search, _JOINT),
        "joint + unrolled": (Search, _JOINT | dict(response="unrolled")),
        "joint + IFT (Hessian)": (Search, _JOINT | _IFT | dict(curvature="hessian")),
        "joint + IFT (Gauss-Newton)": (Search, _JOINT | _IFT | dict(curvature="gauss_newton")),
        "joint + IFT (Gauss-Newton) with per-layer decay": (Search, _JOINT | _IFT | dict(
            curvature="gauss_newton", weight_decay_per="layer")),
        "joint + IFT (Gauss-Newton) with per-tensor decay": (Search, _JOINT | _IFT | dict(
            curvature="gauss_newton", weight_decay_per="tensor")),
    }


def _point(search, fraction: float, history: list) -> dict:
    """Derive and retrain now (the search goes on afterwards)."""
    derived = results.derive(search)
    stamp = search.run_dir.stamp(epoch=int(search.epoch.numpy())) | {"child": derived["child"]}
    result = results.retrain(search, derived, history, stamp)
    logs = [h for h in history if "response/skipped" in h]
    return {"fraction": fraction, "search_seconds": result["search_seconds"],
            "epochs": result["epochs"], "test_accuracy": result["test_accuracy"],
            "val_accuracy": result["val_accuracy"], "child": result["architecture"],
            "hyperparameters": {k: v for k, v in derived["hyperparameters"].items()
                                if k in ("learning_rate", "momentum", "weight_decay")},
            "searched": derived["searched_hyperparameters"],
            "response_skipped": (float(np.mean([h["response/skipped"] for h in logs]))
                                 if logs else None),
            "momentum_mean": [h["controller/momentum"] for h in history
                              if "controller/momentum" in h]}


def run_method(method: str, seed: int, budget_s: float, work_dir: str, quick: bool = False,
               task: data.Splits | None = None) -> list[dict]:
    """One search of `method` with checkpoints at FRACTIONS of budget_s: one row each."""
    cls, overrides = methods()[method]
    task = task or splits(seed)
    config = dataclasses.replace(base_config(seed, quick), **overrides)
    out = os.path.join(work_dir, f"{seed}_" + re.sub(r"\W+", "_", method))
    rows, start = [], time.time()
    with cls(config, out, splits=task, verbose=0, overwrite=True) as search:
        for fraction in FRACTIONS:
            history = search.search(time_budget_s=fraction * budget_s)
            if rows and rows[-1]["epochs"] == len(history):  # no epoch fitted since
                point = {k: v for k, v in rows[-1].items() if k != "wall_seconds"}
            else:
                point = _point(search, fraction, history)
            rows.append({"method": method, "seed": seed, "budget_s": budget_s, **point,
                         "fraction": fraction, "grid_weight_decay": None,
                         "wall_seconds": time.time() - start})
    return rows


def weight_decay_grid(child: str, seed: int, quick: bool = False,
                      task: data.Splits | None = None) -> list[dict]:
    """The child retrained with the default optimizer and each decay of the grid."""
    task = task or splits(seed)
    config = base_config(seed, quick)
    rows = []
    for wd in WEIGHT_DECAY_GRID:
        keras.utils.set_random_seed(seed)
        model = found_child.child_model(child, task.input_shape, task.num_classes,
                                        config.width)
        m = train(model, task, dataclasses.replace(config.retrain, weight_decay=wd))
        rows.append({"method": "reference: best architecture, grid weight decay",
                     "seed": seed, "fraction": 1.0, "grid_weight_decay": wd, "child": child,
                     **m})
    return rows


def reference(rows: list[dict], seed: int, quick: bool = False,
              task: data.Splits | None = None) -> list[dict]:
    """weight_decay_grid on the architecture with the best final validation accuracy."""
    final = [r for r in _searched(rows) if r["seed"] == seed and r["fraction"] == 1.0]
    best = max(final, key=lambda r: r["val_accuracy"])
    return weight_decay_grid(best["child"], seed, quick, task)


def run_seed(seed: int, budget_s: float, work_dir: str, quick: bool = False,
             names=None, on_row=lambda rows: None, with_reference: bool = True) -> list[dict]:
    """Every method (or `names`) on one seed, then (with_reference) the weight-decay
    reference on the best architecture they found."""
    task, rows = splits(seed), []
    for method in names or methods():
        rows += run_method(method, seed, budget_s, work_dir, quick, task)
        on_row(rows)
    if with_reference:
        rows += reference(rows, seed, quick, task)
        on_row(rows)
    return rows


def _searched(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["grid_weight_decay"] is None]


def _mean_se(values) -> str:
    v = np.asarray(values, float)
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{v.mean():.4f} ± {se:.4f}"


def summary(rows: list[dict]) -> dict:
    """Per method: test accuracy at each fraction (over seeds); the goal: does a response
    method at T/2 reach the score-function search's accuracy at T?"""
    out = {}
    for r in _searched(rows):
        out.setdefault(r["method"], {}).setdefault(r["fraction"], []).append(r)
    score = [r["test_accuracy"] for r in out.get("joint, score function", {}).get(1.0, [])]
    goal = {}
    for method, by_fraction in out.items():
        if method.startswith("joint +") and score and 0.5 in by_fraction:
            half = np.mean([r["test_accuracy"] for r in by_fraction[0.5]])
            goal[method] = {"test_at_half": float(half), "score_function_at_full":
                            float(np.mean(score)), "reached": bool(half >= np.mean(score))}
    return {"goal": goal}


def markdown(rows: list[dict]) -> str:
    ref = [r for r in rows if r["grid_weight_decay"] is not None]
    rows = _searched(rows)
    fractions = sorted({r["fraction"] for r in rows})
    head = " | ".join(f"test at {f:g}·T" for f in fractions)
    out = [f"| method | {head} | epochs at T | η, μ, decoupled wd at T (median) | "
           "IFT steps skipped | momentum mean, first → last epoch | seeds |",
           "|---|" + "---:|" * len(fractions) + "---:|---|---:|---|---:|"]
    order = {m: i for i, m in enumerate(methods())}
    for m in sorted(dict.fromkeys(r["method"] for r in rows), key=lambda m: order.get(m, 99)):
        cells = []
        for f in fractions:
            rs = [r for r in rows if r["method"] == m and r["fraction"] == f]
            cells.append(_mean_se([r["test_accuracy"] for r in rs]) if rs else "")
        last = max(r["fraction"] for r in rows if r["method"] == m)
        final = [r for r in rows if r["method"] == m and r["fraction"] == last]
        hp = {k: np.median([r["hyperparameters"].get(k, getattr(DEFAULT_RETRAIN, k))
                            for r in final])  # not searched: the default optimizer's
              for k in ("learning_rate", "momentum", "weight_decay")}
        skipped = [r["response_skipped"] for r in final if r["response_skipped"] is not None]
        moved = [(r["momentum_mean"][0], r["momentum_mean"][-1]) for r in final
                 if r["momentum_mean"]]
        out.append(
            f"| {m} | {' | '.join(cells)} | {np.mean([r['epochs'] for r in final]):.1f} | "
            f"{hp['learning_rate']:.3g}, {hp['momentum']:.3g}, {hp['weight_decay']:.3g} | "
            f"{f'{np.mean(skipped):.0%}' if skipped else ''} | "
            + (f"{np.mean([a for a, _ in moved]):.3f} → {np.mean([b for _, b in moved]):.3f}"
               if moved else "") + f" | {len(final)} |")
    by_seed = {}
    for r in ref:
        if r["val_accuracy"] >= by_seed.get(r["seed"], {"val_accuracy": -1})["val_accuracy"]:
            by_seed[r["seed"]] = r
    if by_seed:
        picked = list(by_seed.values())
        out += ["", f"Reference (best final architecture of each seed, default optimizer, "
                f"weight decay grid {list(WEIGHT_DECAY_GRID)} picked by validation accuracy): "
                f"test {_mean_se([r['test_accuracy'] for r in picked])}, decays picked "
                f"{[r['grid_weight_decay'] for r in picked]}."]
    for m, g in summary(rows)["goal"].items():
        out.append(f"- {m} at T/2: {g['test_at_half']:.4f} vs the score-function search at "
                   f"T: {g['score_function_at_full']:.4f} → goal (≥ at half the time) "
                   f"{'met' if g['reached'] else 'not met'}.")
    return "\n".join(out)


def plot(rows: list[dict], path: str) -> None:
    """Test accuracy against search seconds, mean over seeds, one line per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    rows = _searched(rows)
    for m in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == m]
        fr = sorted({r["fraction"] for r in rs})
        t = [np.mean([r["search_seconds"] for r in rs if r["fraction"] == f]) for f in fr]
        a = [np.mean([r["test_accuracy"] for r in rs if r["fraction"] == f]) for f in fr]
        ax.plot(t, a, marker="o", label=m)
    ax.set(xlabel="search seconds", ylabel="retrained test accuracy",
           title=f"MNIST-1D, {TRAIN_EXAMPLES} training examples")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
