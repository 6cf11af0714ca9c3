"""Pictures of a search (matplotlib, Agg): what the policy did, epoch by epoch.

`write_all(result, output_dir)` writes, from a search's `result.json` (its `history` and
`layers`), the PNGs that exist for it:

* `controller.png`   reward, baseline and policy entropy per epoch;
* `policy.png`       a heat map: π(choice) of every categorical decision per epoch
                     (skip decisions: the probability of the skip);
* `architecture.png` the derived child as a diagram: layers, ops, skip connections;
* `continuous.png`   each continuous hyperparameter's distribution per epoch (median,
                     25–75% and 10–90% bands of the policy's samples);
* `children.png`     sampled children's validation accuracy (mean and best per epoch)
                     against the search's wall time.

The per-epoch policy numbers come from `policy_snapshot`, which the search loop stores in
each history entry: `policy/<decision>/<value>` (empirical marginals of `samples` children
walked with fixed seeds, so the controller's random stream is untouched) and
`policy_hp/<name>/q10|q25|q50|q75|q90` (quantiles of each continuous decision).
matplotlib is imported by the drawing functions only.
"""
from __future__ import annotations

import os

import numpy as np

QUANTILES = (10, 25, 50, 75, 90)
CONTINUOUS_COLUMNS = 6
FILES = ("controller.png", "policy.png", "architecture.png", "continuous.png", "children.png")


# --- what the search records ------------------------------------------------------------
def policy_snapshot(controller, seed, samples: int = 256) -> dict:
    """The policy π_φ now, as flat history entries: for each categorical decision the
    fraction of `samples` children (walked with seeds from `seed`, e.g. [run seed, epoch])
    taking each value (skips: value 1 only), and quantiles of each continuous decision.

    Cost: one eager walk of the controller over `samples` children (tens of ms)."""
    import tensorflow as tf

    space = controller.space
    n_cont = controller.num_continuous
    rng = np.random.default_rng(seed)
    seeds = tf.constant(rng.integers(0, 2**31 - 1, (2, len(space) + n_cont)), tf.int32)
    walk = controller.walk(samples, seeds=seeds)
    children, values = walk.children.numpy(), walk.values.numpy()
    out = {}
    for k, d in enumerate(space.decisions):
        freq = np.bincount(children[:, k], minlength=d.num_values) / samples
        shown = [1] if d.kind == "skip" else range(d.num_values)
        for v in shown:
            out[f"policy/{d.name}/{_label(d.values[v])}"] = float(freq[v])
    for c, d in enumerate(getattr(controller, "continuous", ())):
        for q, x in zip(QUANTILES, np.percentile(values[:, c], QUANTILES)):
            out[f"policy_hp/{d.name}/q{q}"] = float(x)
    return out


def _label(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# --- drawing ----------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _series(history, key):
    """history[i][key] per epoch as floats (NaN where an epoch did not log it)."""
    return np.array([h.get(key, np.nan) for h in history], float)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def plot_controller(history: list, path: str):
    """Reward and baseline (left) and the policy's entropy (right) per epoch."""
    plt = _pyplot()
    epochs = _series(history, "epoch")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(epochs, _series(history, "controller/reward"), "o-", ms=3, label="reward (mean)")
    a.plot(epochs, _series(history, "controller/baseline"), "--", label="baseline")
    if any("controller/best_reward" in h for h in history):
        a.plot(epochs, _series(history, "controller/best_reward"), ":", label="best reward")
    a.set_xlabel("epoch")
    a.set_title("controller reward")
    a.legend()
    b.plot(epochs, _series(history, "controller/entropy"), "o-", ms=3, color="tab:purple")
    b.set_xlabel("epoch")
    b.set_title("policy entropy (nats, summed over decisions)")
    return _save(fig, path)


def policy_rows(history: list) -> tuple[list, np.ndarray]:
    """(row labels "decision: value", probabilities [rows, epochs]) from the history's
    `policy/` entries, in the order the search recorded them."""
    keys = list(dict.fromkeys(k for h in history for k in h if k.startswith("policy/")))
    labels = []
    for k in keys:
        decision, value = k[len("policy/"):].rsplit("/", 1)
        labels.append(f"{decision}" if "/skip_" in decision else f"{decision}: {value}")
    return labels, np.array([_series(history, k) for k in keys]).reshape(len(keys), -1)


def plot_policy(history: list, path: str):
    """Heat map of π(value) for every categorical decision (rows) per epoch (columns)."""
    labels, probs = policy_rows(history)
    if not labels:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(6.5 + 0.15 * probs.shape[1], 14),
                                    1.2 + 0.2 * len(labels)))
    im = ax.imshow(probs, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                   interpolation="nearest",
                   extent=(0.5, probs.shape[1] + 0.5, len(labels) - 0.5, -0.5))
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("epoch")
    epochs = probs.shape[1]
    ax.set_xticks(range(1, epochs + 1, max(1, epochs // 15)))
    ax.set_title("policy: P(choice) per epoch (skip rows: P(skip))", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    return _save(fig, path)


def plot_architecture(layers: list, path: str, title: str | None = None):
    """The derived child as a diagram: input → layers (op names) → pooling → classifier,
    with each skip connection j → i drawn as an arc. Cell spaces (entries without
    "skips") are drawn as their nodes' one-line labels, one box per node."""
    plt = _pyplot()
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    chain = all("skips" in layer for layer in layers)
    if chain:
        names = ["input"] + [f"{i}: {layer['op']}" for i, layer in enumerate(layers)] + [
            "global pool → dense"]
    else:
        names = [""] + [str(layer.get("op", layer)) for layer in layers] + [""]
    fig, ax = plt.subplots(figsize=(4.5 if chain else 7, 0.9 + 0.75 * len(names)))
    ys = {n: -k for k, n in enumerate(range(-1, len(layers) + 1))}  # node index → y

    def y(node):
        return ys[node]

    for k, name in enumerate(names):
        node = k - 1
        if not chain and not name:
            continue
        color = "#dde7f5" if 0 <= node < len(layers) else "#eeeeee"
        half = 1.0 if chain else 1.8
        ax.add_patch(FancyBboxPatch((-half, y(node) - 0.25), 2 * half, 0.5,
                                    boxstyle="round,pad=0.05", fc=color, ec="#333333"))
        ax.text(0, y(node), name, ha="center", va="center", fontsize=10)
        if k and chain:
            ax.add_patch(FancyArrowPatch((0, y(node - 1) - 0.3), (0, y(node) + 0.3),
                                         arrowstyle="-|>", mutation_scale=12, color="#333333"))
    for i, layer in enumerate(layers):
        for j in layer.get("skips", []):
            rad = 0.35 + 0.1 * (i - j)
            ax.add_patch(FancyArrowPatch((1.05, y(j)), (1.05, y(i)),
                                         connectionstyle=f"arc3,rad=-{rad}",
                                         arrowstyle="-|>", mutation_scale=10,
                                         color="tab:orange", lw=1.3))
    ax.set_xlim(-1.3, 2.6) if chain else ax.set_xlim(-2.0, 2.0)
    ax.set_ylim(-len(names) + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(title or ("derived architecture (orange: skip connections)" if chain else
                           "derived cells (node = input:op + input:op)"), fontsize=10)
    return _save(fig, path)


def continuous_names(history: list) -> list:
    """Names of the continuous decisions whose quantiles the history recorded."""
    return list(dict.fromkeys(k.split("/")[1] for h in history for k in h
                              if k.startswith("policy_hp/")))


def plot_continuous(history: list, path: str):
    """Per continuous hyperparameter: the policy's median per epoch with 25–75% and
    10–90% bands (log scale for positive ranges spanning more than a decade); at most
    CONTINUOUS_COLUMNS panels a row (per-tensor weight decay has one per kernel)."""
    names = continuous_names(history)
    if not names:
        return None
    plt = _pyplot()
    epochs = _series(history, "epoch")
    cols = min(len(names), CONTINUOUS_COLUMNS)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        q = {p: _series(history, f"policy_hp/{name}/q{p}") for p in QUANTILES}
        ax.fill_between(epochs, q[10], q[90], alpha=0.2, color="tab:blue", label="10–90%")
        ax.fill_between(epochs, q[25], q[75], alpha=0.4, color="tab:blue", label="25–75%")
        ax.plot(epochs, q[50], color="tab:blue", label="median")
        low, high = np.nanmin(q[10]), np.nanmax(q[90])
        if low > 0 and high / low > 10:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10 if len(name) < 30 else 7)
        ax.set_xlabel("epoch")
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def plot_children(history: list, path: str):
    """Sampled children's validation accuracy (mean and best of each epoch's controller
    batches, on validation batches with the shared weights) against wall time."""
    plt = _pyplot()
    t = np.cumsum(_series(history, "seconds"))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if any("controller/val_accuracy" in h for h in history):
        ax.plot(t, _series(history, "controller/val_accuracy"), "o-", ms=3, label="mean")
        ax.plot(t, _series(history, "controller/best_val_accuracy"), "s:", ms=3, label="best of a batch")
        ax.set_ylabel("validation accuracy")
    else:  # older histories: the reward
        ax.plot(t, _series(history, "controller/reward"), "o-", ms=3, label="reward")
        ax.set_ylabel("reward")
    ax.set_xlabel("search wall time (s)")
    ax.set_title("sampled children (shared weights)")
    ax.legend()
    return _save(fig, path)


def hyperparameters_title(chosen: dict) -> str:
    """"name=value, …" of the chosen hyperparameters; weight decays per layer group or per
    tensor ("weight_decay_<key>") as their range and count."""
    decays = [v for k, v in chosen.items() if k.startswith("weight_decay_")]
    parts = [f"{k}={v:.3g}" for k, v in chosen.items() if not k.startswith("weight_decay_")]
    if decays:
        parts.append(f"weight_decay={min(decays):.3g}–{max(decays):.3g} ({len(decays)} groups)")
    return ", ".join(parts)


def write_all(result: dict, output_dir: str) -> list:
    """Writes every picture that `result` (a search's result.json, or {"history": ...})
    has data for into output_dir; returns the paths written."""
    history = result.get("history") or []
    os.makedirs(output_dir, exist_ok=True)
    path = lambda name: os.path.join(output_dir, name)  # noqa: E731
    written = []
    if history:
        written += [plot_controller(history, path("controller.png")),
                    plot_policy(history, path("policy.png")),
                    plot_continuous(history, path("continuous.png")),
                    plot_children(history, path("children.png"))]
    if result.get("layers"):
        title = None
        if result.get("optimizer_hyperparameters"):
            title = hyperparameters_title(result["optimizer_hyperparameters"])
        written.append(plot_architecture(result["layers"], path("architecture.png"), title))
    return [p for p in written if p]
