"""Search time per epoch as the number of layers and the dataset size grow."""
from __future__ import annotations

import dataclasses
import tempfile

from tf_enas import data
from tf_enas.search import Search, SearchConfig


def _epoch_seconds(config: SearchConfig) -> float:
    """Seconds of the second epoch (the first one includes tracing)."""
    with tempfile.TemporaryDirectory() as d:
        history = Search(dataclasses.replace(config, epochs=2), d, verbose=0).search()
    return history[-1]["seconds"]


def measure(quick: bool = False) -> dict:
    base = SearchConfig(width=32 if quick else 64, controller_steps=5 if quick else 20)
    layers = (6, 12) if quick else (6, 12, 24)
    samples = (4000, 16000) if quick else (4000, 16000, 64000)
    by_layers = {n: _epoch_seconds(dataclasses.replace(base, num_layers=n)) for n in layers}
    # mnist1d's generator makes num_samples examples, 80% of them training
    by_samples = {n: _epoch_seconds(dataclasses.replace(base, num_samples=n * 5 // 4))
                  for n in samples}
    return {"epoch_seconds_by_layers": by_layers, "epoch_seconds_by_train_samples": by_samples,
            "width": base.width}


def markdown(r: dict) -> str:
    rows = ["| setting | seconds / epoch |", "|---|---|"]
    rows += [f"| {n} layers (4k samples) | {s:.2f} |"
             for n, s in r["epoch_seconds_by_layers"].items()]
    rows += [f"| {n} training samples (6 layers) | {s:.2f} |"
             for n, s in r["epoch_seconds_by_train_samples"].items()]
    return "\n".join(rows)
