"""Datasets → train/val/test splits, and tf.data pipelines over them.

Validation is always split off the training set (stratified, seeded); the test set is
touched only by final evaluation. Inputs are float32 with a trailing channel axis:
(N, length, 1) for 1-D data, (N, height, width, channels) for images.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Splits:
    """Train/val/test arrays of one dataset. x: float32 (N, *input_shape), y: int32 (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def spatial_rank(self) -> int:
        """1 for sequences (length, channels), 2 for images (height, width, channels)."""
        return len(self.input_shape) - 1


def _mnist1d(num_samples: int | None = None, seed: int = 42):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    if num_samples is not None:
        args.num_samples = int(num_samples)
    args.seed = seed
    d = make_dataset(args)
    return d["x"][..., None], d["y"], d["x_test"][..., None], d["y_test"]


def _digits(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0)[..., None]
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, d.target, test_size=0.2, random_state=0, stratify=d.target)
    return x_tr, y_tr, x_te, y_te


def _keras_dataset(loader: Callable, path: str | None):
    """Loads a keras.datasets dataset; `path` points at a local .npz with x_train, y_train,
    x_test, y_test (same layout as the download) and skips the download."""
    if path:
        if not os.path.exists(path):
            raise FileNotFoundError(f"dataset file {path!r} does not exist")
        with np.load(path) as f:
            (x_tr, y_tr), (x_te, y_te) = (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    else:
        (x_tr, y_tr), (x_te, y_te) = loader()
    x_tr, x_te = (np.asarray(a, np.float32) / 255.0 for a in (x_tr, x_te))
    if x_tr.ndim == 3:  # grayscale images get a channel axis
        x_tr, x_te = x_tr[..., None], x_te[..., None]
    return x_tr, np.asarray(y_tr).reshape(-1), x_te, np.asarray(y_te).reshape(-1)


def _fashion_mnist(path=None):
    import keras
    return _keras_dataset(keras.datasets.fashion_mnist.load_data, path)


def _cifar10(path=None):
    import keras
    return _keras_dataset(keras.datasets.cifar10.load_data, path)


_LOADERS = {
    "mnist1d": lambda path, num_samples: _mnist1d(num_samples),
    "digits": lambda path, num_samples: _digits(),
    "fashion_mnist": lambda path, num_samples: _fashion_mnist(path),
    "cifar10": lambda path, num_samples: _cifar10(path),
}
DATASETS = tuple(_LOADERS)


def _stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator):
    """Indices (train, val) with `fraction` of each class in val."""
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        val.append(idx[: int(round(fraction * len(idx)))])
    val = np.sort(np.concatenate(val))
    train = np.setdiff1d(np.arange(len(y)), val)
    return train, val


def load(name: str = "mnist1d", seed: int = 0, val_fraction: float = 0.1,
         path: str | None = None, num_samples: int | None = None) -> Splits:
    """Loads dataset `name` and splits `val_fraction` of its training set off as validation.

    Args:
      name: one of DATASETS.
      seed: seeds the train/val split.
      val_fraction: in (0, 1).
      path: for keras.datasets datasets, a local .npz instead of the download.
      num_samples: for mnist1d, the number of generated samples (train + test; default 5000).
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    x_tr, y_tr, x_te, y_te = _LOADERS[name](path, num_samples)
    x_tr, x_te = np.asarray(x_tr, np.float32), np.asarray(x_te, np.float32)
    y_tr, y_te = np.asarray(y_tr, np.int32), np.asarray(y_te, np.int32)
    tr, va = _stratified_split(y_tr, val_fraction, np.random.default_rng(seed))
    num_classes = int(max(y_tr.max(), y_te.max()) + 1)
    return Splits(name, x_tr[tr], y_tr[tr], x_tr[va], y_tr[va], x_te, y_te, num_classes)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None = None,
            repeat: bool = False) -> tf.data.Dataset:
    """A tf.data pipeline of (x, y) batches; shuffled with `seed` when seed is not None."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)
