"""data.load: splits, offline datasets, and the keras.datasets loading path on local files."""
import dataclasses
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

    # keras falls back to a shared /tmp/.keras cache when cache_dir does not exist yet,
    # where files of an earlier run would be reused
    (tmp_path / "cache").mkdir()

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
        y[:min(n, 30)] = np.arange(min(n, 30)) % 10  # >= 3 per class: the split needs 3
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


# --- bad data: a clear error before any training ---------------------------------------
def _arrays(n=60, shape=(12,), k=3, seed=0):
    rng = np.random.default_rng(seed)
    x_tr, x_te = rng.normal(size=(n, *shape)), rng.normal(size=(n // 3, *shape))
    return x_tr, np.arange(n) % k, x_te, np.arange(n // 3) % k


def test_from_arrays_adds_the_channel_axis_and_splits_stratified():
    s = data.from_arrays(*_arrays(), name="mine", seed=1, val_fraction=0.2)
    assert s.input_shape == (12, 1) and s.num_classes == 3 and s.name == "mine"
    assert len(s.x_val) == 12 and np.array_equal(np.bincount(s.y_val), [4, 4, 4])
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int32
    x_tr, y_tr, x_te, y_te = _arrays(shape=(5, 5, 2))
    s = data.from_arrays(x_tr, y_tr.reshape(-1, 1).astype(float), x_te, y_te)
    assert s.input_shape == (5, 5, 2) and s.spatial_rank == 2
    assert data.validate_splits(s) is s


def test_non_finite_inputs_are_named_with_the_first_bad_example():
    x_tr, y_tr, x_te, y_te = _arrays()
    x_tr[7, 3], x_tr[9, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"x_train of dataset 'mine' has non-finite values "
                       r"\(NaN or ±inf as float32\) in 2 examples, first in example 7"):
        data.from_arrays(x_tr, y_tr, x_te, y_te, name="mine")
    x_tr, y_tr, x_te, y_te = _arrays()
    x_te[2, 0] = 1e39  # finite as float64, inf as float32
    with pytest.raises(ValueError, match="x_test of dataset 'arrays' has non-finite .* "
                       "first in example 2"):
        data.from_arrays(x_tr, y_tr, x_te, y_te)


def test_labels_outside_0_to_k_minus_1_are_listed():
    x_tr, y_tr, x_te, y_te = _arrays()
    y_tr[[0, 5]] = -1
    with pytest.raises(ValueError, match=r"y_train of dataset 'arrays' has labels outside "
                       r"0..2 \(-1 in 2 examples\)"):
        data.from_arrays(x_tr, y_tr, x_te, y_te)
    x_tr, y_tr, x_te, y_te = _arrays()
    y_te[0] = 5
    with pytest.raises(ValueError, match=r"y_test of dataset 'arrays' has labels outside "
                       r"0..2 \(5 in 1 examples\); expected .* num_classes=3"):
        data.from_arrays(x_tr, y_tr, x_te, y_te, num_classes=3)
    with pytest.raises(ValueError, match=r"non-integer labels \(e.g. 0.5 in example 3\)"):
        data.from_arrays(x_tr, np.where(np.arange(60) == 3, 0.5, y_tr), x_te, y_te)
    with pytest.raises(ValueError, match="y_train of dataset 'arrays' has 1 class"):
        data.from_arrays(x_tr, np.zeros(60, int), x_te, np.zeros(20, int))


def test_a_class_too_small_for_the_split_is_named():
    x_tr, y_tr, x_te, y_te = _arrays()
    y_tr[:] = np.arange(60) % 2
    y_tr[:3] = 2  # class 2: 3 examples; val_fraction 0.1 needs 6 (round(0.6) = 1 in val)
    with pytest.raises(ValueError, match=r"y_train of dataset 'arrays' has too few examples "
                       r"of 1 class\(es\) \(class 2: 3\); the stratified split "
                       r"val_fraction=0.1 .* needs at least 6 per class"):
        data.from_arrays(x_tr, y_tr, x_te, y_te, val_fraction=0.1)
    assert data.from_arrays(x_tr, y_tr, x_te, y_te, val_fraction=0.3).num_classes == 3
    y_tr[:3] = 3  # class 2 has no example at all
    with pytest.raises(ValueError, match=r"\(class 2: 0\)"):
        data.from_arrays(x_tr, y_tr, x_te, y_te, val_fraction=0.3)


def test_shapes_the_space_cannot_take():
    x_tr, y_tr, x_te, y_te = _arrays()
    for bad in (x_tr[:, 0], x_tr.reshape(60, 2, 2, 3, 1), x_tr[:, :0]):
        with pytest.raises(ValueError, match=r"x_train of dataset 'arrays' has shape \[60.*\]; "
                           r"expected \[N, L\] or \[N, L, C\] \(1-D sequences\) or "
                           r"\[N, H, W, C\] \(images\)"):
            data.from_arrays(bad, y_tr, x_te, y_te)
    with pytest.raises(ValueError, match=r"x_test examples have shape \[10, 1\] but x_train "
                       r"examples \[12, 1\]"):
        data.from_arrays(x_tr, y_tr, x_te[:, :10], y_te)
    with pytest.raises(ValueError, match="x_train has 60 examples but y_train has 59 labels"):
        data.from_arrays(x_tr, y_tr[:59], x_te, y_te)
    with pytest.raises(ValueError, match=r"y_train of dataset 'arrays' has shape \[60, 2\]"):
        data.from_arrays(x_tr, np.stack([y_tr, y_tr], 1), x_te, y_te)
    with pytest.raises(ValueError, match="x_train of dataset 'arrays' is not numeric"):
        data.from_arrays(np.array([["a"] * 12] * 60), y_tr, x_te, y_te)


def test_bad_file_is_named_in_the_error(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "f.npz"
    np.savez(path, x_train=rng.integers(0, 256, (30, 28, 28)), y_train=np.arange(30) % 10 + 1,
             x_test=rng.integers(0, 256, (5, 28, 28)), y_test=np.arange(5))
    with pytest.raises(ValueError, match=f"y_train of {path} \\(dataset 'fashion_mnist'\\) has "
                       "too few examples of 1 class\\(es\\) \\(class 0: 0\\)"):
        data.load("fashion_mnist", val_fraction=0.2, path=str(path))


def test_validate_splits_checks_hand_built_splits():
    s = data.from_arrays(*_arrays(), val_fraction=0.2)
    data.validate_splits(s)
    x = s.x_val.copy()
    x[4, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x_val of splits 'arrays' has non-finite .* "
                       "first in example 4"):
        data.validate_splits(dataclasses.replace(s, x_val=x))
    with pytest.raises(ValueError, match=r"y_train of splits 'arrays' has labels outside "
                       r"0..1 \(2 in 16 examples\)"):
        data.validate_splits(dataclasses.replace(s, num_classes=2))
    with pytest.raises(ValueError, match=r"x_train of splits 'arrays' has shape \[48, 12\]; "
                       r"expected \[N, L, C\]"):
        data.validate_splits(dataclasses.replace(s, x_train=s.x_train[..., 0]))
    with pytest.raises(ValueError, match="x_test of splits 'arrays' has dtype float64; "
                       "expected a float32"):
        data.validate_splits(dataclasses.replace(s, x_test=s.x_test.astype(np.float64)))
    with pytest.raises(ValueError, match=r"x_val of splits 'arrays' has examples of shape "
                       r"\[6, 2\]"):
        data.validate_splits(dataclasses.replace(s, x_val=s.x_val.reshape(-1, 6, 2)))
    with pytest.raises(ValueError, match=r"y_train of splits 'arrays' has too few examples of "
                       r"1 class\(es\) \(class 3: 0\); training every class needs at least 1"):
        data.validate_splits(dataclasses.replace(s, num_classes=4))


# --- your own data: .npz, .csv, tf.data -------------------------------------------------
def _own(n=90, shape=(16,), k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.normal(size=(n, *shape)) + y.reshape(-1, *[1] * len(shape)), y


@pytest.mark.parametrize("shape,input_shape", [((16,), (16, 1)), ((6, 6, 2), (6, 6, 2))],
                         ids=["1d", "2d"])
def test_npz_with_and_without_a_test_set(tmp_path, shape, input_shape):
    x, y = _own(shape=shape)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
    s = data.load("npz", seed=0, val_fraction=0.2, path=str(path))
    assert s.input_shape == input_shape and s.num_classes == 3 and s.name == "npz"
    assert len(s.x_train) + len(s.x_val) == 60 and len(s.x_test) == 30
    np.testing.assert_allclose(s.x_test.reshape(30, -1), x[60:].reshape(30, -1), rtol=1e-6)
    np.savez(path, x_train=x, y_train=y)  # no test set: a fixed stratified 20%
    s, other = (data.load("npz", seed=seed, path=str(path)) for seed in (0, 1))
    assert len(s.x_test) == 18 and np.array_equal(np.bincount(s.y_test), [6, 6, 6])
    np.testing.assert_array_equal(s.x_test, other.x_test)  # --seed moves val, not test
    assert len(s.x_train) + len(s.x_val) == 72


def test_csv_with_header_label_column_and_without_header(tmp_path):
    x, y = _own(n=60, shape=(5,))
    path = tmp_path / "mine.csv"
    rows = ["f0,f1,label,f2,f3,f4"] + [",".join(map(str, [*r[:2], c, *r[2:]]))
                                        for r, c in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")
    s = data.load("csv", val_fraction=0.2, path=str(path))
    assert s.input_shape == (5, 1) and s.num_classes == 3 and len(s.x_test) == 12
    full = np.concatenate([s.x_train, s.x_val, s.x_test])[..., 0]
    np.testing.assert_allclose(full[np.argsort(full[:, 0])], x[np.argsort(x[:, 0])],
                               rtol=1e-6)  # every row, features without the label
    path.write_text("\n".join(",".join(map(str, [*r, c])) for r, c in zip(x, y)))  # last col
    assert data.load("csv", val_fraction=0.2, path=str(path)).input_shape == (5, 1)


def _npz_file(tmp_path, name="bad.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_every_bad_file_is_named_in_a_clear_error(tmp_path):
    x, y = _own()
    cases = []  # (dataset, path, expected message)
    p = _npz_file(tmp_path, x_train=x)
    cases.append(("npz", p, rf"{p} \(dataset 'npz'\) has arrays \['x_train'\], missing "
                  r"\['y_train'\]"))
    p = _npz_file(tmp_path, "half.npz", x_train=x, y_train=y, x_test=x)
    cases.append(("npz", p, r"missing \['y_test'\]"))
    p = str(tmp_path / "text.npz")
    open(p, "w").write("not a zip")
    cases.append(("npz", p, rf"{p} \(dataset 'npz'\) is not a readable .npz file"))
    p = str(tmp_path / "one.npy")
    np.save(p, x)
    cases.append(("npz", p, rf"{p} \(dataset 'npz'\) holds a single array"))
    bad = x.copy()
    bad[4, 2] = np.nan
    p = _npz_file(tmp_path, "nan.npz", x_train=bad, y_train=y)
    cases.append(("npz", p, rf"x_train of {p} \(dataset 'npz'\) has non-finite values"))
    p = _npz_file(tmp_path, "labels.npz", x_train=x, y_train=y + 1, x_test=x, y_test=y)
    cases.append(("npz", p, rf"y_train of {p} \(dataset 'npz'\) has too few examples of 1 "
                  r"class\(es\) \(class 0: 0\)"))
    p = _npz_file(tmp_path, "one_based.npz", x_train=x, y_train=y + 1)
    cases.append(("npz", p, rf"y_train of {p} \(dataset 'npz'\) has labels 1..3 and no 0; "
                  r"expected class indices 0..K-1 \(subtract 1"))
    p = _npz_file(tmp_path, "neg.npz", x_train=x, y_train=y - 1)
    cases.append(("npz", p, rf"y_train of {p} \(dataset 'npz'\) has labels outside"))
    p = _npz_file(tmp_path, "shape.npz", x_train=x.reshape(90, 2, 2, 2, 2), y_train=y)
    cases.append(("npz", p, rf"x_train of {p} \(dataset 'npz'\) has shape \[90, 2, 2, 2, 2\]"))
    p = _npz_file(tmp_path, "few.npz", x_train=x[:40], y_train=np.r_[y[:38], 3, 3])
    cases.append(("npz", p, rf"y_train of {p} \(dataset 'npz'\) has too few examples"))
    p = _npz_file(tmp_path, "count.npz", x_train=x, y_train=y[:50])
    cases.append(("npz", p, rf"{p} \(dataset 'npz'\): x_train has 90 examples but y_train "
                  "has 50 labels"))
    p = str(tmp_path / "ragged.csv")
    open(p, "w").write("a,b,label\n1,2,0\n1,2\n")
    cases.append(("csv", p, rf"{p} \(dataset 'csv'\): line 3 has 2 columns, expected 3"))
    p = str(tmp_path / "word.csv")
    open(p, "w").write("a,b,label\n1,2,0\n1,x,1\n")
    cases.append(("csv", p, rf"{p} \(dataset 'csv'\): line 3, column 'b' is 'x', not a "
                  "number"))
    p = str(tmp_path / "empty.csv")
    open(p, "w").write("\n")
    cases.append(("csv", p, rf"{p} \(dataset 'csv'\) is empty"))
    p = str(tmp_path / "onecol.csv")
    open(p, "w").write("1\n2\n")
    cases.append(("csv", p, rf"{p} \(dataset 'csv'\) has 1 column"))
    p = str(tmp_path / "half.csv")
    open(p, "w").write("a,label\n" + "".join(f"{i},{i % 2 + 0.5}\n" for i in range(20)))
    cases.append(("csv", p, rf"y_train of {p} \(dataset 'csv'\) has non-integer labels"))
    cases.append(("csv", str(tmp_path), "is a directory"))
    for name, path, message in cases:
        with pytest.raises(ValueError, match=message):
            data.load(name, path=path)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.load("npz", path=str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match=r"dataset 'csv' reads your own file: pass path=FILE"):
        data.load("csv")


def test_tf_data_dataset_batched_or_not_with_or_without_test():
    import tensorflow as tf

    x, y = _own(shape=(8, 8, 1))
    train = tf.data.Dataset.from_tensor_slices((x[:60].astype("float32"), y[:60]))
    test = tf.data.Dataset.from_tensor_slices((x[60:].astype("float32"), y[60:]))
    s = data.from_dataset(train.batch(7), test, name="tfds", val_fraction=0.2)
    assert s.input_shape == (8, 8, 1) and s.spatial_rank == 2 and len(s.x_test) == 30
    assert len(s.x_train) + len(s.x_val) == 60 and s.name == "tfds"
    np.testing.assert_allclose(s.x_test, x[60:], rtol=1e-6)
    s = data.from_dataset(train.map(lambda a, b: {"x": a, "y": b}))  # dicts, no test set
    assert len(s.x_test) == 12 and len(s.x_train) + len(s.x_val) == 48
    with pytest.raises(ValueError, match=r"train of tf.data dataset 'dataset' yields"):
        data.from_dataset(tf.data.Dataset.from_tensor_slices(x))
    with pytest.raises(ValueError, match="expected a tf.data.Dataset"):
        data.from_dataset(x)
    bad = x.astype("float32")
    bad[3, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="x_train of tf.data dataset 'd' has non-finite"):
        data.from_dataset(tf.data.Dataset.from_tensor_slices((bad, y)), name="d")


def test_as_splits_takes_what_a_search_accepts():
    import tensorflow as tf

    x, y = _own(n=60)
    s = data.as_splits((x[:45], y[:45], x[45:], y[45:]), val_fraction=0.2)
    assert len(s.x_test) == 15 and s.name == "arrays"
    assert data.as_splits(s) is s
    assert len(data.as_splits((x, y)).x_test) == 12  # no test set: a fixed 20%
    ds = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y))
    assert data.as_splits(ds, name="d").name == "d"
    assert len(data.as_splits((ds.take(45), ds.skip(45))).x_test) == 15
    with pytest.raises(ValueError, match="data of type str is not searchable"):
        data.as_splits("mnist1d")
    with pytest.raises(ValueError, match="x_train of dataset 'arrays' has non-finite"):
        data.as_splits((np.full_like(x, np.nan), y))


def test_search_takes_arrays_or_a_tf_data_dataset(tmp_path):
    import tensorflow as tf

    from tf_enas.search import Search, SearchConfig

    x, y = _own(n=90, shape=(12,))
    config = SearchConfig(num_layers=1, width=4, batch_size=16, val_fraction=0.2)
    ds = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y))
    for i, given in enumerate([(x[:60], y[:60], x[60:], y[60:]), (x, y), ds]):
        search = Search(config, str(tmp_path / str(i)), splits=given, verbose=0)
        try:
            s = search.splits
            assert s.input_shape == (12, 1) and s.num_classes == 3
            assert len(s.x_test) == (30 if i == 0 else 18)
        finally:
            search.close()
