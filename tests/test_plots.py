"""Pictures of a search: the policy snapshot in the history, and PNGs that are written and
show something (not blank), from a real search and from the search binary."""
import contextlib
import io
import json
import os

import numpy as np
import pytest
from absl import flags

from tf_enas import plots
from tf_enas.controller import ControllerConfig
from tf_enas.joint_controller import DEFAULTS, JointController
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


TINY = ["--num_layers=3", "--width=4", "--batch_size=32", "--epochs=3", "--controller_steps=2",
        "--controller_batch=4", "--val_batch_size=32", "--derive_samples=4",
        "--retrain_epochs=1", "--controller_lstm_size=8", "--verbose=0"]


def _run_binary(argv):
    from tf_enas.bin import search as search_bin

    flags.FLAGS(["tf-enas-search", *argv])
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            search_bin.main(["tf-enas-search"])
        return out.getvalue()
    finally:
        flags.FLAGS.unparse_flags()


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One real search by the binary, on 2-D images in an .npz the test writes, with two
    continuous decisions (so that every picture has data)."""
    tmp = tmp_path_factory.mktemp("search")
    rng = np.random.default_rng(1)
    y = np.arange(240) % 3
    x = rng.normal(size=(240, 6, 6, 1)) + y[:, None, None, None]
    np.savez(tmp / "mine.npz", x_train=x, y_train=y)
    out = tmp / "run"
    printed = _run_binary(["--dataset=npz", f"--dataset_path={tmp / 'mine.npz'}", *TINY,
                           "--continuous=momentum", "--continuous=weight_decay",
                           f"--output_dir={out}"])
    with open(out / "result.json") as f:
        return json.load(f), out, printed


def test_search_binary_writes_every_picture_for_an_npz_file(searched):
    result, out, printed = searched
    summary = json.loads(printed[printed.index("{\n"):])
    assert sorted(os.path.basename(p) for p in summary["pictures"]) == sorted(plots.FILES)
    for name in plots.FILES:
        assert_picture(str(out / name))
    assert result["dataset"] == "npz" and len(result["layers"]) == 3


def test_search_history_records_the_policy_and_children_accuracy(searched):
    history = searched[0]["history"]
    assert len(history) == 3
    ops = ("conv3", "conv5", "sepconv3", "sepconv5", "avgpool3", "maxpool3")
    for h in history:
        assert 0 <= h["controller/val_accuracy"] <= h["controller/best_val_accuracy"] <= 1
        assert abs(sum(h[f"policy/layer_1/op/{op}"] for op in ops) - 1) < 1e-6
        assert 0.5 < h["policy_hp/momentum/q50"] < 0.98
    labels, probs = plots.policy_rows(history)
    assert probs.shape == (len(labels), 3) and len(labels) == 3 * 6 + 3  # ops + P(skip) rows


def test_write_all_without_continuous_decisions(searched, tmp_path):
    result = searched[0]
    # an ENAS result (no continuous decisions) has no continuous.png, the rest as before
    enas = dict(result, history=[{k: v for k, v in h.items() if "policy_hp" not in k}
                                 for h in result["history"]], optimizer_hyperparameters={})
    written = plots.write_all(enas, str(tmp_path))
    assert {os.path.basename(p) for p in written} == set(plots.FILES) - {"continuous.png"}
    for p in written:
        assert_picture(p)


def test_many_continuous_decisions_wrap_into_rows(tmp_path):
    """Per-tensor weight decay (one decision per kernel): one panel each, at most
    CONTINUOUS_COLUMNS a row; the architecture's title gives the decays as a range."""
    import matplotlib.image

    names = ["momentum"] + [f"weight_decay_layer_{i}.conv3.conv.kernel" for i in range(8)]
    history = [{"epoch": e, **{f"policy_hp/{n}/q{q}": 1e-4 * (i + 1) * (1 + q / 100 + e)
                               for i, n in enumerate(names) for q in plots.QUANTILES}}
               for e in (1, 2, 3)]
    assert plots.continuous_names(history) == names
    path = plots.plot_continuous(history, str(tmp_path / "continuous.png"))
    assert_picture(path)
    assert matplotlib.image.imread(path).shape[:2] == (2 * 330, plots.CONTINUOUS_COLUMNS * 400)
    chosen = {"momentum": 0.9, **{n: 1e-4 * i for i, n in enumerate(names[1:], 1)}}
    assert plots.hyperparameters_title(chosen) == (
        "momentum=0.9, weight_decay=0.0001–0.0008 (8 groups)")


def test_bad_files_are_usage_errors_naming_the_file(tmp_path):
    from absl import app

    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((40, 8)), y_train=np.arange(40) % 2 + 5)
    with pytest.raises(app.UsageError, match=rf"--dataset=npz: y_train of {bad} "
                       r"\(dataset 'npz'\) has labels 5..6 and no 0"):
        _run_binary(["--dataset=npz", f"--dataset_path={bad}", *TINY,
                     f"--output_dir={tmp_path / 'run'}"])
    with pytest.raises(flags.IllegalFlagValueError, match="--dataset_path=FILE"):
        flags.FLAGS(["tf-enas-search", "--dataset=csv", f"--output_dir={tmp_path}"])
    flags.FLAGS.unparse_flags()


def test_architecture_diagram_has_every_layer_and_skip(tmp_path):
    layers = [{"op": "conv3", "skips": []}, {"op": "maxpool3", "skips": [0]},
              {"op": "sepconv5", "skips": [0, 1]}]
    assert_picture(plots.plot_architecture(layers, str(tmp_path / "a.png")))
    cells = [{"cell": "normal", "node": n, "op": f"normal {n + 2} = 0:sep3x3+1:avg3x3"}
             for n in range(3)]  # a cell space's entries: one-line labels, no skips
    assert_picture(plots.plot_architecture(cells, str(tmp_path / "cells.png")))
