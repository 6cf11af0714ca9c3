"""An epoch's bookkeeping: its seeded batches, per-step logs → the epoch's means (each key
over the steps that logged it; vector logs split into one scalar per continuous decision),
TensorBoard."""
from __future__ import annotations

import numpy as np
import tensorflow as tf


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


def batches(seed: int, epoch: int, n: int, size: int, count: int, salt: int) -> np.ndarray:
    """`count` index batches of `size` from permutations of range(n) seeded by (seed, epoch,
    salt), so a resumed run draws the same batches."""
    rng = np.random.default_rng([seed, epoch, salt])
    idx = np.concatenate([rng.permutation(n) for _ in range(1 + count * size // n)])
    return idx[: count * size].reshape(count, size)


def to_tensorboard(writer, logs: dict, step: int):
    with writer.as_default(step=step):
        for k, v in logs.items():
            tf.summary.scalar(k, v)
