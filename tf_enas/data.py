"""Datasets → train/val/test splits, and tf.data pipelines over them.

Validation is always split off the training set (stratified, seeded; of a text, its last
windows); the test set is touched only by final evaluation. Your own data:
`load("npz", path=FILE)`, `load("csv", path=FILE)`, `from_arrays(...)` or
`from_dataset(tf.data.Dataset)`; a character-level language model on your text:
`load("text", path=FILE)` (text_splits).
Inputs are float32 with a trailing channel axis: (N, length, 1) for 1-D data,
(N, height, width, channels) for images. Every dataset, and your own arrays, is checked
before any training: shapes, finite values, labels in 0..K-1, enough examples per class
for the split; errors name the array and the file.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Splits:
    """Train/val/test arrays of one dataset. x: float32 (N, *input_shape), y: int32 (N,),
    or (N, length) for per-step targets (a language model's next characters)."""

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
    def sequence_targets(self) -> bool:
        """One label per step (y: (N, length)), not per example."""
        return np.ndim(self.y_train) == 2

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


TEST_FRACTION = 0.2  # of your own file's examples when it has no test set
TEXT_LENGTH = 35  # characters per language-model window (ENAS's Penn Treebank BPTT length)


def text_splits(text: str, val_fraction: float = 0.1, length: int = TEXT_LENGTH,
                name: str = "text", source: str = "text") -> Splits:
    """A character-level language model's splits of `text`: windows of `length` one-hot
    characters x (N, length, V), each step's target the next character y (N, length);
    windows do not overlap. In order of the text: the first (1 − TEST_FRACTION) of the
    windows train (its last `val_fraction` validate), the rest test — contiguous, as
    language-model corpora are split, so no test text is seen in training."""
    vocab = sorted(set(text))
    if len(vocab) < 2:
        raise ValueError(f"{source} has {len(vocab)} distinct character(s); a language "
                         "model needs at least 2")
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((index[c] for c in text), np.int32, len(text))
    n = (len(ids) - 1) // length
    train = int(round(n * (1 - TEST_FRACTION)))
    val = int(round(train * val_fraction))
    if min(train - val, val, n - train) < 1:
        raise ValueError(f"{source} has {len(ids)} characters ({n} windows of {length}): too "
                         "few to give training, validation and test windows")
    starts = np.arange(n) * length
    x = np.eye(len(vocab), dtype=np.float32)[ids[starts[:, None] + np.arange(length)]]
    y = ids[starts[:, None] + np.arange(1, length + 1)]
    cut = [train - val, train]
    return Splits(name, x[:cut[0]], y[:cut[0]], x[cut[0]:cut[1]], y[cut[0]:cut[1]],
                  x[cut[1]:], y[cut[1]:], len(vocab))


def _text(path: str | None, val_fraction: float) -> Splits:
    path = _user_file(path, "text", (".txt",))
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"dataset file {path!r} is not UTF-8 text ({e})") from None
    return text_splits(text, val_fraction, source=f"{path} (dataset 'text')")


def _test_split(x, y, source: str, fraction: float = TEST_FRACTION):
    """(x_train, y_train, x_test, y_test): a stratified `fraction` of (x, y) as the test
    set, with a fixed seed so that the test set never moves with --seed."""
    y = _as_y(y, "y_train", source)
    if len(y) != len(x):
        raise ValueError(f"{source}: x_train has {len(x)} examples but y_train has {len(y)} "
                         "labels; expected one label per example")
    if (y < 0).any():  # _stratified_split indexes classes: report bad labels first
        _check_labels(y, int(y.max()) + 1, "y_train", source)
    tr, te = _stratified_split(y, fraction, np.random.default_rng(0))
    x = np.asarray(x)
    return x[tr], y[tr], x[te], y[te]


def _user_file(path: str | None, kind: str, suffixes: tuple) -> str:
    if not path:
        raise ValueError(f"dataset {kind!r} reads your own file: pass path=FILE "
                         f"(--dataset_path=FILE{'|'.join(suffixes)})")
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset file {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"dataset file {path!r} is a directory; expected a {kind} file")
    return path


def _npz(path: str | None):
    """Your arrays in an .npz: x_train, y_train and optionally x_test, y_test (else a
    stratified TEST_FRACTION of the training arrays is the test set)."""
    path = _user_file(path, "npz", (".npz",))
    source = f"{path} (dataset 'npz')"
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as e:  # not a zip / not numpy
        raise ValueError(f"{source} is not a readable .npz file ({type(e).__name__}: {e}); "
                         "expected numpy.savez(FILE, x_train=..., y_train=...)") from None
    if not hasattr(f, "files"):
        raise ValueError(f"{source} holds a single array, not named arrays; expected "
                         "numpy.savez(FILE, x_train=..., y_train=...[, x_test=..., y_test=...])")
    with f:
        names = set(f.files)
        missing = [k for k in ("x_train", "y_train") if k not in names]
        if missing or len(names & {"x_test", "y_test"}) == 1:
            missing += [k for k in ("x_test", "y_test") if k not in names and names & {
                "x_test", "y_test"}]
            raise ValueError(f"{source} has arrays {sorted(names)}, missing {missing}; "
                             "expected x_train, y_train and optionally both x_test, y_test")
        try:
            arrays = {k: f[k] for k in names & {"x_train", "y_train", "x_test", "y_test"}}
        except ValueError as e:  # object arrays need pickle
            raise ValueError(f"{source}: {e}; expected numeric arrays") from None
    if "x_test" in arrays:
        return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    return _test_split(_as_x(arrays["x_train"], "x_train", source), arrays["y_train"], source)


def _csv(path: str | None):
    """Your table in a .csv: one example per row, numeric feature columns (a 1-D sequence
    of length = number of features) and a label column, "label" (any case) if the first
    row is a header naming it, else the last column. A stratified TEST_FRACTION of the
    rows is the test set. Images: use an .npz ([N, H, W, C])."""
    import csv

    path = _user_file(path, "csv", (".csv",))
    source = f"{path} (dataset 'csv')"
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{source} is empty; expected rows of features and a label")

    def numeric(cell):
        try:
            float(cell)
            return True
        except ValueError:
            return False

    header = None
    if not all(numeric(c) for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    width = len(header) if header else len(rows[0]) if rows else 0
    if width < 2:
        raise ValueError(f"{source} has {width} column(s); expected at least one feature "
                         "column and a label column")
    label = width - 1
    if header:
        named = [i for i, c in enumerate(header) if c.lower() == "label"]
        label = named[0] if named else label
    first = 2 if header else 1
    values = np.empty((len(rows), width), np.float64)
    for n, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(f"{source}: line {n + first} has {len(r)} columns, expected "
                             f"{width}{' (as the header)' if header else ''}")
        for j, c in enumerate(r):
            try:
                values[n, j] = float(c)
            except ValueError:
                col = f"column {header[j]!r}" if header else f"column {j + 1}"
                raise ValueError(f"{source}: line {n + first}, {col} is {c!r}, not a "
                                 "number; expected numeric features and integer labels") from None
    if len(values) == 0:
        raise ValueError(f"{source} has a header but no rows; expected rows of features and "
                         "a label")
    x = np.delete(values, label, axis=1)
    return _test_split(_as_x(x, "x_train", source), values[:, label], source)


_LOADERS = {
    "mnist1d": lambda path, num_samples: _mnist1d(num_samples),
    "digits": lambda path, num_samples: _digits(),
    "fashion_mnist": lambda path, num_samples: _fashion_mnist(path),
    "cifar10": lambda path, num_samples: _cifar10(path),
    "npz": lambda path, num_samples: _npz(path),
    "csv": lambda path, num_samples: _csv(path),
}
DATASETS = (*_LOADERS, "text")


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


_SHAPES = "[N, L] or [N, L, C] (1-D sequences) or [N, H, W, C] (images)"


def _as_x(x, name: str, source: str) -> np.ndarray:
    """x as float32 with a channel axis; errors name the array, the source and the expectation."""
    try:
        with np.errstate(over="ignore"):  # too large for float32: reported as non-finite
            x = np.asarray(x, np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} of {source} is not numeric ({e}); expected {_SHAPES}") from None
    if x.ndim == 2:  # 1-D sequences without a channel axis
        x = x[..., None]
    if x.ndim not in (3, 4) or 0 in x.shape[1:]:
        raise ValueError(f"{name} of {source} has shape {list(x.shape)}; expected {_SHAPES} "
                         "with every axis after N at least 1")
    return x


def _as_y(y, name: str, source: str) -> np.ndarray:
    """y as int64 class indices of shape [N] (range checked later)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} of {source} has shape {list(y.shape)}; expected [N] or [N, 1] "
                         "class indices")
    if y.dtype.kind not in "iub":
        try:
            yf = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} of {source} has {y.dtype} labels; expected integer class "
                             "indices 0..K-1") from None
        bad = ~np.isfinite(yf) | (yf != np.round(yf))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} of {source} has non-integer labels (e.g. {yf[first]} in "
                             f"example {first}); expected class indices 0..K-1")
        y = yf
    return np.asarray(y).astype(np.int64)


def _check_finite(x: np.ndarray, name: str, source: str) -> None:
    finite = np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{name} of {source} has non-finite values (NaN or ±inf as float32) in "
                         f"{len(bad)} examples, first in example {int(bad[0])}; expected finite "
                         "inputs: clean or impute them before searching")


def _check_labels(y: np.ndarray, num_classes: int, name: str, source: str) -> None:
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        values = np.unique(y[bad])
        shown = ", ".join(str(v) for v in values[:5]) + (", …" if len(values) > 5 else "")
        raise ValueError(f"{name} of {source} has labels outside 0..{num_classes - 1} ({shown} "
                         f"in {int(bad.sum())} examples); expected class indices "
                         f"0..num_classes-1 with num_classes={num_classes}")


def _min_per_class(val_fraction: float) -> int:
    """The fewest examples of a class for which the stratified split leaves at least one
    in validation and one in training."""
    n = 2
    while not (round(val_fraction * n) >= 1 and n - round(val_fraction * n) >= 1):
        n += 1
    return n


def _check_class_counts(y: np.ndarray, num_classes: int, need: int, why: str, name: str,
                        source: str) -> None:
    counts = np.bincount(y, minlength=num_classes)
    short = np.flatnonzero(counts < need)
    if len(short):
        listed = ", ".join(f"class {c}: {counts[c]}" for c in short[:5])
        raise ValueError(f"{name} of {source} has too few examples of {len(short)} class(es) "
                         f"({listed}{', …' if len(short) > 5 else ''}); {why} needs at least "
                         f"{need} per class")


def from_arrays(x_train, y_train, x_test, y_test, name: str = "arrays", seed: int = 0,
                val_fraction: float = 0.1, num_classes: int | None = None,
                source: str | None = None) -> Splits:
    """Your own arrays → Splits, checked before any training, with `val_fraction` of the
    training set split off (stratified, seeded) as validation.

    x: [N, L] or [N, L, C] sequences, or [N, H, W, C] images (a channel axis is added to
    [N, L]); y: [N] or [N, 1] integer class indices 0..num_classes-1 (default: the largest
    label + 1). `source` names the data in error messages (default: `name`).
    Raises ValueError naming the array and what was expected, for a wrong shape,
    non-finite values, labels outside 0..K-1 or a class too small for the split.
    """
    source = source or f"dataset {name!r}"
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    x_tr, x_te = _as_x(x_train, "x_train", source), _as_x(x_test, "x_test", source)
    y_tr, y_te = _as_y(y_train, "y_train", source), _as_y(y_test, "y_test", source)
    for xn, x, yn, y in (("x_train", x_tr, "y_train", y_tr), ("x_test", x_te, "y_test", y_te)):
        if len(x) == 0:
            raise ValueError(f"{xn} of {source} is empty; expected at least one example")
        if len(x) != len(y):
            raise ValueError(f"{source}: {xn} has {len(x)} examples but {yn} has {len(y)} "
                             "labels; expected one label per example")
    if x_te.shape[1:] != x_tr.shape[1:]:
        raise ValueError(f"{source}: x_test examples have shape {list(x_te.shape[1:])} but "
                         f"x_train examples {list(x_tr.shape[1:])}; expected one input shape")
    _check_finite(x_tr, "x_train", source)
    _check_finite(x_te, "x_test", source)
    if num_classes is None:
        low = int(min(y_tr.min(), y_te.min()))
        if low >= 1:
            raise ValueError(f"y_train of {source} has labels {low}..{int(y_tr.max())} and no "
                             f"0; expected class indices 0..K-1 (subtract {low}, or pass "
                             "num_classes if class 0 has no examples)")
        num_classes = int(max(y_tr.max(), y_te.max(), -1) + 1)
    _check_labels(y_tr, num_classes, "y_train", source)
    _check_labels(y_te, num_classes, "y_test", source)
    if num_classes < 2:
        raise ValueError(f"y_train of {source} has {num_classes} class(es); expected at least 2")
    _check_class_counts(y_tr, num_classes, _min_per_class(val_fraction),
                        f"the stratified split val_fraction={val_fraction} (one example in "
                        "validation, one in training)", "y_train", source)
    y_tr, y_te = y_tr.astype(np.int32), y_te.astype(np.int32)
    tr, va = _stratified_split(y_tr, val_fraction, np.random.default_rng(seed))
    return Splits(name, x_tr[tr], y_tr[tr], x_tr[va], y_tr[va], x_te, y_te, num_classes)


def _dataset_arrays(dataset, name: str, source: str):
    """(x, y) numpy arrays of a tf.data.Dataset of (x, y) pairs, batched or not."""
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"{name} of {source} is a {type(dataset).__name__}; expected a "
                         "tf.data.Dataset of (x, y) pairs")
    spec = dataset.element_spec
    if isinstance(spec, dict):
        keys = [k for k in ("x", "y") if k not in spec]
        if keys:
            raise ValueError(f"{name} of {source} yields dicts with keys {sorted(spec)}; "
                             "expected (x, y) pairs or dicts with keys 'x' and 'y'")
        dataset = dataset.map(lambda d: (d["x"], d["y"]))
        spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2
            and all(isinstance(t, tf.TensorSpec) for t in spec)):
        raise ValueError(f"{name} of {source} yields {spec}; expected (x, y) pairs of "
                         "tensors (features, integer label)")
    if spec[1].shape.rank is None or spec[1].shape.rank > 2:
        raise ValueError(f"{name} of {source} has labels of shape {spec[1].shape}; expected "
                         "a scalar class index per example (or a batch of them)")
    if spec[1].shape.rank >= 1:  # batched: [B] (or [B, 1]) labels
        dataset = dataset.unbatch()
    xs, ys = [], []
    for x, y in dataset.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError(f"{name} of {source} is empty; expected at least one example")
    try:
        return np.stack(xs), np.asarray(ys)
    except ValueError:
        shapes = sorted({tuple(np.shape(x)) for x in xs})[:3]
        raise ValueError(f"{name} of {source} has examples of different shapes ({shapes}); "
                         "expected one input shape") from None


def from_dataset(train, test=None, name: str = "dataset", seed: int = 0,
                 val_fraction: float = 0.1, num_classes: int | None = None) -> Splits:
    """A tf.data.Dataset → Splits, checked like from_arrays.

    train, test: tf.data.Datasets of (x, y) pairs (or dicts with keys "x", "y"), batched
    or not; x one example ([L], [L, C] or [H, W, C]), y its integer class index. Without
    `test`, a stratified TEST_FRACTION of `train` (fixed seed) is the test set. The
    datasets are read once into memory (the search indexes its arrays directly).
    """
    source = f"tf.data dataset {name!r}"
    x_tr, y_tr = _dataset_arrays(train, "train", source)
    if test is None:
        x_tr, y_tr, x_te, y_te = _test_split(_as_x(x_tr, "x_train", source), y_tr, source)
    else:
        x_te, y_te = _dataset_arrays(test, "test", source)
    return from_arrays(x_tr, y_tr, x_te, y_te, name=name, seed=seed,
                       val_fraction=val_fraction, num_classes=num_classes, source=source)


def as_splits(obj, seed: int = 0, val_fraction: float = 0.1, name: str | None = None) -> Splits:
    """What a search accepts as its data → checked Splits: Splits (validate_splits), a
    tuple (x_train, y_train, x_test, y_test) or (x_train, y_train) of arrays (from_arrays;
    without a test set a fixed stratified TEST_FRACTION is split off), a tf.data.Dataset
    or a pair (train, test) of them (from_dataset)."""
    if isinstance(obj, Splits):
        return validate_splits(obj)
    if isinstance(obj, tf.data.Dataset):
        return from_dataset(obj, name=name or "dataset", seed=seed, val_fraction=val_fraction)
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and all(
            isinstance(d, tf.data.Dataset) for d in obj):
        return from_dataset(obj[0], obj[1], name=name or "dataset", seed=seed,
                            val_fraction=val_fraction)
    if isinstance(obj, (tuple, list)) and len(obj) in (2, 4):
        source = f"dataset {name or 'arrays'!r}"
        arrays = (tuple(obj) if len(obj) == 4 else
                  _test_split(_as_x(obj[0], "x_train", source), obj[1], source))
        return from_arrays(*arrays, name=name or "arrays", seed=seed,
                           val_fraction=val_fraction)
    raise ValueError(f"data of type {type(obj).__name__} is not searchable; expected Splits, "
                     "(x_train, y_train[, x_test, y_test]) arrays, or a tf.data.Dataset "
                     "(or a (train, test) pair of them)")


def validate_splits(splits: Splits) -> Splits:
    """Checks Splits built by hand (e.g. passed to a search) before any training: float32
    x of shape [N, L, C] or [N, H, W, C] with one input shape, finite; int y in
    0..num_classes-1, one per example (or per step: [N, L]); every class in the training
    split (per-example targets). Returns splits.
    Raises ValueError naming the array and what was expected."""
    source = f"splits {splits.name!r}"
    for part in ("train", "val", "test"):
        x, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        xn, yn = f"x_{part}", f"y_{part}"
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            raise ValueError(f"{xn} of {source} has dtype {getattr(x, 'dtype', type(x))}; "
                             "expected a float32 numpy array (data.from_arrays converts)")
        if x.ndim not in (3, 4) or 0 in x.shape[1:]:
            raise ValueError(f"{xn} of {source} has shape {list(x.shape)}; expected [N, L, C] "
                             "(1-D sequences) or [N, H, W, C] (images); data.from_arrays adds "
                             "the channel axis to [N, L]")
        if x.shape[1:] != splits.x_train.shape[1:]:
            raise ValueError(f"{xn} of {source} has examples of shape {list(x.shape[1:])}, "
                             f"x_train {list(splits.x_train.shape[1:])}; expected one input shape")
        per_step = splits.sequence_targets and x.ndim == 3  # [N, L] targets of [N, L, C]
        if (not isinstance(y, np.ndarray) or y.dtype.kind not in "iu"
                or y.shape[1:] != ((x.shape[1],) if per_step else ())):
            raise ValueError(f"{yn} of {source} has shape {list(np.shape(y))} and dtype "
                             f"{getattr(y, 'dtype', type(y))}; expected [N] integer class indices"
                             " (or [N, L], one per step of x [N, L, C])")
        if len(x) == 0 or len(x) != len(y):
            raise ValueError(f"{source}: {xn} has {len(x)} examples and {yn} {len(y)} labels; "
                             "expected at least one example and one label per example")
        _check_finite(x, xn, source)
        _check_labels(y, splits.num_classes, yn, source)
    if not splits.sequence_targets:  # a language model's rarest characters may be test-only
        _check_class_counts(splits.y_train, splits.num_classes, 1, "training every class",
                            "y_train", source)
    return splits


def load(name: str = "mnist1d", seed: int = 0, val_fraction: float = 0.1,
         path: str | None = None, num_samples: int | None = None) -> Splits:
    """Loads dataset `name` and splits `val_fraction` of its training set off as validation.

    The arrays are checked before any training (see from_arrays); errors name the
    dataset, or the file at `path`.

    Args:
      name: one of DATASETS: "mnist1d", "digits", "fashion_mnist", "cifar10", or your own
        file: "npz" (arrays x_train, y_train, optionally x_test, y_test) or "csv" (numeric
        feature columns and a label column; 1-D sequences). Without a test set in the
        file, a stratified TEST_FRACTION of its examples (fixed seed) is the test set.
        "text": a UTF-8 text file, split for a character-level language model
        (text_splits: per-step targets, contiguous splits; --space=rnn_cell).
      seed: seeds the train/val split.
      val_fraction: in (0, 1).
      path: the file of "npz" and "csv"; for keras.datasets datasets, a local .npz
        instead of the download.
      num_samples: for mnist1d, the number of generated samples (train + test; default 5000).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if name == "text":
        return _text(path, val_fraction)
    x_tr, y_tr, x_te, y_te = _LOADERS[name](path, num_samples)
    source = f"{path} (dataset {name!r})" if path else f"dataset {name!r}"
    return from_arrays(x_tr, y_tr, x_te, y_te, name=name, seed=seed,
                       val_fraction=val_fraction, source=source)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None = None,
            repeat: bool = False) -> tf.data.Dataset:
    """A tf.data pipeline of (x, y) batches; shuffled with `seed` when seed is not None."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)
