"""Pictures of a search: the policy snapshot in the history, and PNGs that are written and
show something (not blank), from a real search and from the search binary."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tf_enas import data, plots
from tf_enas.controller import ControllerConfig
from tf_enas.joint_controller import DEFAULTS, JointController
from tf_enas.retrain import RetrainConfig
from tf_enas.search import Search, SearchConfig
from tf_enas.space import SearchSpace


def assert_picture(path, min_bytes=5000):
    """A PNG that exists, is not tiny, and is not one flat colour."""
    import matplotlib.image

    assert os.path.exists(path), path
    assert os.path.getsize(path) >= min_bytes, (path, os.path.getsize(path))
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] >= 200 and img.shape[1] >= 200
    assert img[..., :3].std() > 0.05, path  # drawn on, not blank
    # more than background + one colour: lines, text, cells
    assert len(np.unique(img[..., :3].reshape(-1, 3).round(2), axis=0)) > 20


def test_policy_snapshot_is_marginals_and_leaves_the_random_stream_alone():
    space = SearchSpace(3, ops=("conv3", "avgpool3"), choices={"learning_rate": (0.1, 0.01)})
    c = JointController(space, (DEFAULTS["weight_decay"],), ControllerConfig(lstm_size=8))
    rng_before = c.rng.state.numpy().copy()
    snap = plots.policy_snapshot(c, [0, 1], samples=512)
    assert np.array_equal(c.rng.state.numpy(), rng_before)
    assert snap == plots.policy_snapshot(c, [0, 1], samples=512)  # seeded
    # every op / choice decision sums to one; skips record P(skip = 1)
    for name, values in (("layer_0/op", ("conv3", "avgpool3")),
                         ("learning_rate", ("0.1", "0.01"))):
        probs = [snap[f"policy/{name}/{v}"] for v in values]
        assert abs(sum(probs) - 1) < 1e-6
    assert 0 <= snap["policy/layer_2/skip_0/1"] <= 1 and "policy/layer_2/skip_0/0" not in snap
    # the first op decision has no history: its frequency estimates π(op) within 4 s.e.
    exact = c.probabilities(0, np.zeros((1, len(space)), np.int32))[0]
    assert abs(snap["policy/layer_0/op/conv3"] - exact[0]) < 4 * np.sqrt(0.25 / 512)
    q = [snap[f"policy_hp/weight_decay/q{p}"] for p in plots.QUANTILES]
    assert q == sorted(q) and 1e-7 < q[0] and q[-1] < 1.0


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    rng = np.random.default_rng(0)
    y = np.arange(240) % 3
    x = rng.normal(size=(240, 16)) + y[:, None]
    splits = data.from_arrays(x[:180], y[:180], x[180:], y[180:], val_fraction=0.2)
    config = SearchConfig(num_layers=3, width=4, batch_size=32, epochs=3, controller_steps=2,
                          controller_batch=4, val_batch_size=32, derive_samples=4,
                          continuous=("momentum", "weight_decay"),
                          controller=ControllerConfig(lstm_size=8),
                          retrain=RetrainConfig(epochs=1, batch_size=32))
    out = str(tmp_path_factory.mktemp("search"))
    result = Search(config, out, splits=splits, verbose=0).run()
    return result, out


def test_search_history_records_the_policy_and_children_accuracy(searched):
    result, _ = searched
    history = result["history"]
    assert len(history) == 3
    for h in history:
        assert 0 <= h["controller/val_accuracy"] <= h["controller/best_val_accuracy"] <= 1
        assert abs(sum(h[f"policy/layer_1/op/{op}"] for op in
                       ("conv3", "conv5", "sepconv3", "sepconv5", "avgpool3", "maxpool3")) - 1) < 1e-6
        assert 0.5 < h["policy_hp/momentum/q50"] < 0.98
    labels, probs = plots.policy_rows(history)
    assert probs.shape == (len(labels), 3) and len(labels) == 3 * 6 + 3  # ops + P(skip) rows


def test_write_all_writes_every_picture_of_a_search(searched, tmp_path):
    result, _ = searched
    written = plots.write_all(result, str(tmp_path))
    assert sorted(os.path.basename(p) for p in written) == sorted(plots.FILES)
    for p in written:
        assert_picture(p)
    # an ENAS result (no continuous decisions) has no continuous.png, the rest as before
    enas = dict(result, history=[{k: v for k, v in h.items() if "policy_hp" not in k}
                                 for h in result["history"]], optimizer_hyperparameters={})
    names = {os.path.basename(p) for p in plots.write_all(enas, str(tmp_path / "enas"))}
    assert names == set(plots.FILES) - {"continuous.png"}


def test_architecture_diagram_has_every_layer_and_skip(tmp_path):
    layers = [{"op": "conv3", "skips": []}, {"op": "maxpool3", "skips": [0]},
              {"op": "sepconv5", "skips": [0, 1]}]
    assert_picture(plots.plot_architecture(layers, str(tmp_path / "a.png")))
    cells = [{"cell": "normal", "node": n, "op": f"normal {n + 2} = 0:sep3x3+1:avg3x3"}
             for n in range(3)]  # a cell space's entries: one-line labels, no skips
    assert_picture(plots.plot_architecture(cells, str(tmp_path / "cells.png")))


def test_search_binary_writes_pictures_for_an_npz_file(tmp_path, capsys):
    from tf_enas.bin import search as search_bin

    rng = np.random.default_rng(1)
    y = np.arange(200) % 2
    x = rng.normal(size=(200, 8, 8, 1)) + y[:, None, None, None]  # 2-D images
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x, y_train=y)
    out = tmp_path / "run"
    tiny = ["--num_layers=2", "--width=4", "--batch_size=32", "--epochs=2",
            "--controller_steps=2", "--controller_batch=4", "--val_batch_size=32",
            "--derive_samples=4", "--retrain_epochs=1", "--controller_lstm_size=8",
            "--verbose=0"]
    flags.FLAGS(["tf-enas-search", "--dataset=npz", f"--dataset_path={path}", *tiny,
                 f"--output_dir={out}"])
    try:
        search_bin.main(["tf-enas-search"])
    finally:
        flags.FLAGS.unparse_flags()
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n"):])
    assert sorted(os.path.basename(p) for p in summary["pictures"]) == sorted(
        set(plots.FILES) - {"continuous.png"})
    for name in set(plots.FILES) - {"continuous.png"}:
        assert_picture(str(out / name))
    result = json.load(open(out / "result.json"))
    assert result["dataset"] == "npz" and len(result["layers"]) == 2

    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=x, y_train=y + 5)
    flags.FLAGS(["tf-enas-search", "--dataset=npz", f"--dataset_path={bad}", *tiny,
                 f"--output_dir={tmp_path / 'bad_run'}"])
    try:
        from absl import app
        with pytest.raises(app.UsageError, match=rf"--dataset=npz: y_train of {bad} "
                           r"\(dataset 'npz'\) has too few examples"):
            search_bin.main(["tf-enas-search"])
    finally:
        flags.FLAGS.unparse_flags()
    with pytest.raises(flags.IllegalFlagValueError, match="--dataset_path=FILE"):
        flags.FLAGS(["tf-enas-search", "--dataset=csv", f"--output_dir={tmp_path}"])
    flags.FLAGS.unparse_flags()
