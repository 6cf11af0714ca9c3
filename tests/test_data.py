"""data.load: splits, offline datasets, and the keras.datasets loading path on local files."""
import gzip

import numpy as np
import pytest

from tf_enas import data


def test_mnist1d_splits_are_stratified_disjoint_and_seeded():
    s = data.load("mnist1d", seed=3, val_fraction=0.1)
    assert len(s.x_train) + len(s.x_val) == 4000 and abs(len(s.x_val) - 400) <= 5
    assert s.x_train.shape[1:] == (40, 1)
    assert s.x_test.shape == (1000, 40, 1) and s.num_classes == 10
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int32
    # stratified: each class has 10% of its examples in val (to rounding)
    full = np.concatenate([s.y_train, s.y_val])
    for c in range(10):
        assert abs((s.y_val == c).sum() - 0.1 * (full == c).sum()) <= 0.5
    # disjoint: no validation row is also a training row
    train_rows = {r.tobytes() for r in s.x_train}
    assert not any(r.tobytes() in train_rows for r in s.x_val)
    again, other = data.load("mnist1d", seed=3), data.load("mnist1d", seed=4)
    np.testing.assert_array_equal(again.x_val, s.x_val)
    assert not np.array_equal(other.x_val, s.x_val)
    np.testing.assert_array_equal(other.x_test, s.x_test)  # the test set never moves


def test_digits_is_2d_with_channel():
    s = data.load("digits", seed=0, val_fraction=0.2)
    assert s.input_shape == (8, 8, 1) and s.spatial_rank == 2
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 1797
    assert 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError, match="mnist1d, digits, fashion_mnist, cifar10"):
        data.load("mnist")
    with pytest.raises(ValueError, match="val_fraction"):
        data.load("digits", val_fraction=1.5)


def _local_get_file(module, tmp_path, local_files, monkeypatch):
    """Routes keras' real get_file to file:// URLs of local files (no network)."""
    from keras.src.utils import file_utils

    def get_file(fname=None, origin=None, untar=False, cache_subdir="datasets", **kwargs):
        kwargs.pop("file_hash", None)
        return file_utils.get_file(fname, origin="file://" + local_files[fname],
                                   untar=untar, cache_dir=str(tmp_path / "cache"),
                                   cache_subdir=cache_subdir, **kwargs)

    monkeypatch.setattr(module, "get_file", get_file)


def test_fashion_mnist_through_keras_loader(tmp_path, monkeypatch):
    import keras.src.datasets.fashion_mnist as fm

    rng = np.random.default_rng(0)
    sizes = {"train": 50, "t10k": 20}
    files, truth = {}, {}
    for split, n in sizes.items():
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        y[:10] = np.arange(10)
        truth[split] = (x, y)
        for kind, arr, header in (("images-idx3", x, 16), ("labels-idx1", y, 8)):
            name = f"{split}-{kind}-ubyte.gz"
            with gzip.open(tmp_path / name, "wb") as f:
                f.write(b"\0" * header + arr.tobytes())
            files[name] = str(tmp_path / name)
    _local_get_file(fm, tmp_path, files, monkeypatch)
    s = data.load("fashion_mnist", seed=0, val_fraction=0.2)
    assert s.input_shape == (28, 28, 1) and len(s.x_train) + len(s.x_val) == 50
    np.testing.assert_allclose(s.x_test[..., 0], truth["t10k"][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(s.y_test, truth["t10k"][1])


def test_cifar10_keras_layout(monkeypatch):
    """keras' cifar10 loader needs the full 50k-image archive, so its output layout
    (uint8 NHWC images, labels of shape (n, 1)) is fed in directly."""
    import keras

    rng = np.random.default_rng(1)
    x_tr, x_te = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (50, 10))
    y_tr, y_te = (np.arange(n, dtype=np.uint8).reshape(n, 1) % 10 for n in (50, 10))
    monkeypatch.setattr(keras.datasets.cifar10, "load_data",
                        lambda: ((x_tr, y_tr), (x_te, y_te)))
    s = data.load("cifar10", seed=0, val_fraction=0.2)
    assert s.input_shape == (32, 32, 3) and len(s.x_train) + len(s.x_val) == 50
    np.testing.assert_allclose(s.x_test, x_te / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(s.y_test, y_te[:, 0])


def test_local_npz_path(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "f.npz"
    np.savez(path, x_train=rng.integers(0, 256, (30, 28, 28)), y_train=np.arange(30) % 10,
             x_test=rng.integers(0, 256, (5, 28, 28)), y_test=np.arange(5))
    s = data.load("fashion_mnist", seed=0, val_fraction=0.2, path=str(path))
    assert len(s.x_val) == 10 and s.x_test.shape == (5, 28, 28, 1)  # round(0.2 * 3) per class
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        data.load("fashion_mnist", path=str(tmp_path / "nope.npz"))
