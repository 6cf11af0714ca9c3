"""Atomic file writes: nothing half-written survives a killed run."""
from __future__ import annotations

import json
import os

import keras


def write_json(path: str, obj) -> None:
    """JSON into a temporary file, then renamed over `path`."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    os.replace(tmp, path)


def save_model(model: keras.Model, path: str) -> None:
    """model.save into a temporary .keras file, then renamed over `path`."""
    tmp = f"{path}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)
