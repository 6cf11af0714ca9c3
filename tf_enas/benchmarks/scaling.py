"""Search time per epoch as the number of layers and the dataset size grow."""
from __future__ import annotations

import dataclasses
import tempfile

from tf_enas.search import Search, SearchConfig


def _epoch_seconds(config: SearchConfig) -> float:
    """Seconds of the second epoch (the first one includes tracing)."""
    with tempfile.TemporaryDirectory() as d:
        history = Search(dataclasses.replace(config, epochs=2), d, verbose=0).search()
    return history[-1]["seconds"]


def measure(quick: bool = False) -> dict:
    """Seconds per epoch against the layer count (at the base size) and the training-set
    size (at the base layer count); quick: a smoke run at width 16."""
    base = SearchConfig(width=16 if quick else 64, controller_steps=5 if quick else 20,
                        num_layers=2 if quick else 6,
                        num_samples=1250 if quick else 5000)
    layers = (2, 4) if quick else (6, 12, 24)
    samples = (1000, 2000) if quick else (4000, 16000, 64000)
    measured = {}  # (layers, samples) → seconds: the base setting is in both rows

    def seconds(config):
        key = (config.num_layers, config.num_samples)
        if key not in measured:
            measured[key] = _epoch_seconds(config)
        return measured[key]

    by_layers = {n: seconds(dataclasses.replace(base, num_layers=n)) for n in layers}
    # mnist1d's generator makes num_samples examples, 80% of them training
    by_samples = {n: seconds(dataclasses.replace(base, num_samples=n * 5 // 4))
                  for n in samples}
    return {"epoch_seconds_by_layers": by_layers, "epoch_seconds_by_train_samples": by_samples,
            "width": base.width, "base_layers": base.num_layers,
            "base_train_samples": base.num_samples * 4 // 5}


def markdown(r: dict) -> str:
    rows = ["| setting | seconds / epoch |", "|---|---|"]
    rows += [f"| {n} layers ({r['base_train_samples']} training samples) | {s:.2f} |"
             for n, s in r["epoch_seconds_by_layers"].items()]
    rows += [f"| {n} training samples ({r['base_layers']} layers) | {s:.2f} |"
             for n, s in r["epoch_seconds_by_train_samples"].items()]
    return "\n".join(rows)
