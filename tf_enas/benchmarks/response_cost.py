"""Per-epoch wall time of the joint search with each response estimator, side by side in
one process (issue goal: unrolled and ift ≤ 2× none at the shipped settings).

The configurations are search_quality's joint methods (the flagfiles' settings). Each runs
`epochs` search epochs without a time budget; the first epoch traces (the IFT graph holds
second derivatives through the supernet and takes minutes on 2 cores) and is reported
apart from the mean of the later ones.
"""
from __future__ import annotations

import dataclasses
import tempfile

from tf_enas.benchmarks import search_quality


def measure(quick: bool = False, epochs: int = 3, dataset: str = "mnist1d") -> list[dict]:
    """One row per response: first_epoch_s, epoch_s (mean of epochs 2..), ratio_to_none."""
    rows = []
    for method, (cls, overrides) in search_quality.weight_sharing_methods().items():
        if not overrides.get("continuous"):
            continue
        config = search_quality.search_config(dataset, 0, 1.0, quick, **overrides)
        config = dataclasses.replace(config, epochs=epochs, time_budget_s=None)
        with tempfile.TemporaryDirectory() as out:
            history = cls(config, out, verbose=0).search()
        later = [h["seconds"] for h in history[1:]]
        rows.append({"method": method, "response": config.response,
                     "first_epoch_s": history[0]["seconds"],
                     "epoch_s": sum(later) / len(later)})
    for r in rows:
        r["ratio_to_none"] = r["epoch_s"] / rows[0]["epoch_s"]
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| method | first epoch (s, traces) | later epochs (s) | ratio to none (goal ≤ 2) |",
           "|---|---:|---:|---:|"]
    out += [f"| {r['method']} | {r['first_epoch_s']:.1f} | {r['epoch_s']:.1f} | "
            f"{r['ratio_to_none']:.2f} |" for r in rows]
    return "\n".join(out)
