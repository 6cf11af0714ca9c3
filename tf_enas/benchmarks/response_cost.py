"""Per-epoch wall time of the joint search with each response estimator, side by side in
one process (issue 13's goals: a later epoch ≤ 1.5× response=none at the flagfiles'
settings, a first epoch at most 30 s longer than none's).

The configurations are search_quality's joint methods (the flagfiles' settings). Each runs
`epochs` search epochs without a time budget; the first epoch traces the estimator's
second-order graphs and is reported apart from the mean of the later ones.
"""
from __future__ import annotations

import dataclasses
import tempfile

from tf_enas.benchmarks import search_quality


def _row(method, cls, config, epochs) -> dict:
    config = dataclasses.replace(config, epochs=epochs, time_budget_s=None)
    with tempfile.TemporaryDirectory() as out:
        history = cls(config, out, verbose=0).search()
    later = [h["seconds"] for h in history[1:]]
    return {"method": method, "response": config.response,
            "response_every": config.response_every, "first_epoch_s": history[0]["seconds"],
            "epoch_s": sum(later) / len(later)}


def _ratios(rows: list[dict]) -> list[dict]:
    for r in rows:
        r["ratio_to_none"] = r["epoch_s"] / rows[0]["epoch_s"]
    return rows


def measure(quick: bool = False, epochs: int = 3, dataset: str = "mnist1d") -> list[dict]:
    """One row per response: first_epoch_s, epoch_s (mean of epochs 2..), ratio_to_none
    (quick: no IFT row, to keep --quick short)."""
    return _ratios([
        _row(method, cls, search_quality.search_config(dataset, 0, 1.0, quick, **overrides),
             epochs)
        for method, (cls, overrides) in search_quality.weight_sharing_methods().items()
        if overrides.get("continuous") and not (quick and overrides.get("response") == "ift")])


EVERIES = {"joint + unrolled": (1, 2, 5), "joint + ift": (5, 10, 20)}


def measure_every(everies=None, quick: bool = False, epochs: int = 3,
                  dataset: str = "mnist1d") -> list[dict]:
    """The cost of a later epoch against `response_every` (everies: method → values,
    default EVERIES) for each response estimator at the flagfiles' other settings; the
    first row is response=none."""
    methods = search_quality.weight_sharing_methods()
    cls, none = methods["joint, response=none"]
    rows = [_row("joint, response=none", cls,
                 search_quality.search_config(dataset, 0, 1.0, quick, **none), epochs)]
    for method, values in (everies or EVERIES).items():
        cls, overrides = methods[method]
        rows += [_row(method, cls, search_quality.search_config(
            dataset, 0, 1.0, quick, **(overrides | {"response_every": n})), epochs)
            for n in values]
    return _ratios(rows)


def markdown(rows: list[dict]) -> str:
    out = ["| method | response_every | first epoch (s, traces) | later epochs (s) | "
           "ratio to none |", "|---|---:|---:|---:|---:|"]
    out += [f"| {r['method']} | {r['response_every']} | {r['first_epoch_s']:.1f} | "
            f"{r['epoch_s']:.1f} | {r['ratio_to_none']:.2f} |" for r in rows]
    return "\n".join(out)
