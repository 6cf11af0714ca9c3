"""The tabular section of tf-enas-benchmark: jobs, summary table and regret plot.

``jobs(tables, methods, seeds)`` lists every (table, method, seed) in a fixed order (a
shard runs a slice of it, shards.py); ``run_jobs`` runs them (one row each,
tabular_methods.run); ``summary(rows)`` gives, per table and method, the regret at
25/50/100/200 evaluations (mean ± standard error over seeds; checkpoints past the run's
length are left out), the normalized final regret, and the method's rank on the table
(1 = lowest mean final regret; ties share a rank); ``markdown`` and ``plot`` render it.
"""
from __future__ import annotations

import numpy as np

from tf_enas.benchmarks import tabular_methods
from tf_enas.benchmarks.tabular import Table

KEY = ("benchmark", "dataset", "method", "seed")
CHECKPOINTS = (25, 50, 100, 200)
DEFAULT_TABLES = ("nasbench201/cifar10", "nasbench201/cifar100", "hpolib/slice_localization",
                  "hpobench/australian")


def jobs(tables, methods, seeds) -> list[tuple[str, str, int]]:
    """Every (table, method, seed), table-major."""
    return [(t, m, int(s)) for t in tables for m in methods for s in seeds]


def run_jobs(job_list, evaluations: int, log=None, on_row=None) -> list[dict]:
    """One row per job (tables loaded once each); on_row(rows so far) after each."""
    loaded, rows = {}, []
    for name, method, seed in job_list:
        if name not in loaded:
            loaded[name] = Table(name)
        rows.append(tabular_methods.run(loaded[name], method, seed, evaluations))
        if log:
            log(f"{name} {method} seed {seed}: regret {rows[-1]['final_regret']:.4g} "
                f"({rows[-1]['seconds']:.1f} s)")
        if on_row:
            on_row(rows)
    return rows


def _mean_se(x):
    x = np.asarray(x, float)
    se = x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    return float(x.mean()), float(se)


def summary(rows) -> list[dict]:
    """Per (table, method): regret mean/se at each checkpoint, normalized final, rank."""
    groups = {}
    for r in rows:
        groups.setdefault((f"{r['benchmark']}/{r['dataset']}", r["method"]), []).append(r)
    order = {m: i for i, m in enumerate(tabular_methods.METHODS)}
    out = []
    for (table, method), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(
            kv[0][1], len(order)))):
        n = min(len(r["regret_curve"]) for r in rs)
        item = {"table": table, "method": method, "seeds": len(rs), "evaluations": n,
                "regret": {}, "final": _mean_se([r["regret_curve"][n - 1] for r in rs]),
                "normalized_final": _mean_se([r["normalized_final_regret"] for r in rs]),
                "overhead_ms": float(np.median([r["overhead_ms"] for r in rs]))}
        for c in CHECKPOINTS:
            if c <= n:
                item["regret"][c] = _mean_se([r["regret_curve"][c - 1] for r in rs])
        out.append(item)
    for table in {s["table"] for s in out}:
        same = [s for s in out if s["table"] == table]
        for s in same:  # ties share the better rank
            s["rank"] = 1 + sum(o["final"][0] < s["final"][0] for o in same)
    return out


def _fmt(mean_se):
    m, se = mean_se
    return f"{m:.3g} ± {se:.2g}" if np.isfinite(se) else f"{m:.3g}"


def markdown(rows) -> str:
    """Per table: regret at the checkpoints, normalized final regret, rank; then the
    mean rank of each method over the tables."""
    items = summary(rows)
    if not items:
        return "(no results)"
    lines = []
    for table in dict.fromkeys(s["table"] for s in items):
        same = [s for s in items if s["table"] == table]
        cps = [c for c in CHECKPOINTS if c in same[0]["regret"]]
        t = Table(table)
        lines += [f"### {table} ({t.metric}, {t.direction}; best {t.best:.5g}, median "
                  f"{t.median:.5g})", "",
                  "| method | seeds | " + " | ".join(f"regret @{c}" for c in cps)
                  + " | normalized final | rank | ms / evaluation |",
                  "|---|" + "---:|" * (len(cps) + 4)]
        for s in same:
            lines.append(f"| {s['method']} | {s['seeds']} | "
                         + " | ".join(_fmt(s["regret"][c]) for c in cps)
                         + f" | {_fmt(s['normalized_final'])} | {s['rank']} | "
                         f"{s['overhead_ms']:.1f} |")
        lines.append("")
    methods = dict.fromkeys(s["method"] for s in items)
    lines += ["### mean rank over the tables", "", "| method | mean rank | tables |",
              "|---|---:|---:|"]
    for m in methods:
        ranks = [s["rank"] for s in items if s["method"] == m]
        lines.append(f"| {m} | {np.mean(ranks):.2f} | {len(ranks)} |")
    return "\n".join(lines)


def plot(rows, path: str) -> None:
    """Mean regret (± standard error) against evaluations, one panel per table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = list(dict.fromkeys(f"{r['benchmark']}/{r['dataset']}" for r in rows))
    methods = list(tabular_methods.METHODS)  # one color per method in every panel
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(tables), figsize=(4.5 * len(tables), 3.6), squeeze=False)
    for ax, table in zip(axes[0], tables):
        same = [r for r in rows if f"{r['benchmark']}/{r['dataset']}" == table]
        for method in dict.fromkeys(r["method"] for r in same):
            curves = [r["regret_curve"] for r in same if r["method"] == method]
            n = min(map(len, curves))
            c = np.array([x[:n] for x in curves])
            m = c.mean(0)
            se = c.std(0, ddof=1) / np.sqrt(len(c)) if len(c) > 1 else np.zeros(n)
            x = np.arange(1, n + 1)
            color = colors[methods.index(method) % len(colors)]
            ax.plot(x, m, label=method, color=color,
                    linestyle="--" if method == "policy_oracle" else "-")
            ax.fill_between(x, np.maximum(m - se, 1e-12), m + se, alpha=0.2, color=color)
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_title(table)
    axes[0][0].set_ylabel("regret (table mean)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines()}
    axes[0][-1].legend(list(handles.values()), list(handles), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
