"""Per-step logs → one epoch's means (each key over the steps that logged it), with
vector logs (one entry per continuous decision) split into one scalar per name."""
from __future__ import annotations

import numpy as np


def scalars(logs: dict, names) -> dict:
    """{"k": [a, b]} → {"k/name_a": a, "k/name_b": b}; scalars as floats."""
    out = {}
    for k, v in logs.items():
        v = np.asarray(v)
        if v.ndim:
            out |= {f"{k}/{n}": float(x) for n, x in zip(names, v)}
        else:
            out[k] = float(v)
    return out


def means(steps: list) -> dict:
    keys = dict.fromkeys(k for s in steps for k in s)
    return {k: float(np.mean([s[k] for s in steps if k in s])) for k in keys}
