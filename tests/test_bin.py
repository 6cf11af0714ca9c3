"""Binaries: every flag's bad value gives an error naming the flag; an end-to-end run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from absl import flags

from tf_enas.bin import search as search_bin

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TINY = ["--num_samples=600", "--num_layers=3", "--width=8", "--batch_size=32", "--epochs=2",
        "--controller_steps=2", "--controller_batch=4", "--val_batch_size=32",
        "--derive_samples=4", "--retrain_epochs=2", "--controller_lstm_size=16", "--verbose=0"]

BAD = [
    ("dataset", "mnist"), ("num_layers", "0"), ("ops", "conv7"), ("width", "0"),
    ("batch_size", "-1"), ("lr_max", "-0.1"), ("lr_min", "0"), ("momentum", "1.5"),
    ("l2", "-1"), ("grad_clip_norm", "0"), ("epochs", "0"), ("time_budget_s", "0"),
    ("controller_steps", "0"), ("controller_batch", "0"), ("val_batch_size", "0"),
    ("derive_samples", "0"), ("derive_proxy_epochs", "-1"), ("derive_max_params", "-1"),
    ("controller_lstm_size", "0"), ("controller_lr", "-1"),
    ("controller_temperature", "0"), ("controller_tanh_constant", "-1"),
    ("controller_entropy_weight", "-1"), ("controller_baseline_decay", "1.5"),
    ("controller_skip_target", "0"), ("controller_skip_weight", "-1"), ("seed", "-3"),
    ("val_fraction", "2"), ("num_samples", "5"), ("learning_rates", "0.1,abc"),
    ("weight_decays", "-1"), ("retrain_epochs", "0"), ("retrain_batch_size", "0"),
    ("retrain_optimizer", "rmsprop"), ("retrain_learning_rate", "-1"),
    ("retrain_weight_decay", "-1"), ("retrain_width", "0"), ("retrain_dropout", "1.5"),
    ("retrain_num_cells", "0"), ("retrain_drop_path", "1.5"),
    ("lr_restart_epochs", "0"), ("verbose", "7"), ("response", "bogus"), ("cg_damping", "-1"),
    ("lookahead_steps", "-1"), ("continuous", "dropout"), ("reward", "best"), ("solver", "lu"),
    ("cg_tol", "-1"), ("response_every", "0"), ("truncate", "-1"), ("cg_iterations", "0"),
    ("weight_decay_per", "kernel"),
]


@pytest.mark.parametrize("flag, value", BAD)
def test_bad_search_flag_is_named(flag, value):
    argv = ["tf-enas-search", f"--{flag}={value}", "--output_dir=/tmp/x"]
    try:
        with pytest.raises(flags.Error, match=f"--{flag}"):
            flags.FLAGS(argv)
    finally:
        flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("args, match", [
    (["--lr_min=0.5", "--lr_max=0.1"], "lr_min"),
    (["--continuous=learning_rate", "--learning_rate_range=0.1"], "--learning_rate_range"),
    (["--response=ift", "--continuous=weight_decay"], "reward=loss"),
    (["--weight_decay_per=tensor", "--continuous=momentum"],
     "weight_decay_per=tensor needs weight_decay"),
    (["--retrain_num_cells=2"], "--retrain_num_cells"),  # macro has no cells
    (["--retrain_drop_path=0.2"], "--retrain_drop_path"),
])
def test_inconsistent_values_are_named(tmp_path, args, match):
    flags.FLAGS(["tf-enas-search", *args, f"--output_dir={tmp_path}"])
    try:
        with pytest.raises(Exception, match=match):
            search_bin.main(["tf-enas-search"])
    finally:
        flags.FLAGS.unparse_flags()


def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, env=ENV, timeout=600)


def test_search_then_train_end_to_end(tmp_path):
    out = tmp_path / "search"
    proc = run("tf_enas.bin.search", *TINY, f"--output_dir={out}", "--learning_rates=0.05,0.1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    for key in ("architecture", "hyperparameters", "val_accuracy", "test_accuracy",
                "search_seconds", "train_seconds"):
        assert key in result
    assert result["hyperparameters"]["learning_rate"] in (0.05, 0.1)
    assert len(result["history"]) == 2 and os.path.isdir(out / "checkpoints")
    assert any(f.startswith("events") for f in os.listdir(out / "tensorboard"))
    # the saved model is the retrained child: same test accuracy when reloaded
    from tf_enas.data import load
    splits = load("mnist1d", seed=0, num_samples=600)
    model = keras.models.load_model(out / "model.keras")
    acc = np.mean(np.argmax(model.predict(splits.x_test, verbose=0), -1) == splits.y_test)
    assert abs(acc - result["test_accuracy"]) < 1e-6
    again = tmp_path / "train"
    proc = run("tf_enas.bin.train", f"--from_result={out / 'result.json'}", "--num_samples=600",
               "--retrain_epochs=1", f"--output_dir={again}", "--verbose=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = json.loads((again / "result.json").read_text())
    assert trained["architecture"] == result["architecture"]
    # trained as the search chose: its learning rate, its width; the flag overrides epochs
    assert trained["hyperparameters"]["learning_rate"] == result["hyperparameters"][
        "learning_rate"]
    assert trained["hyperparameters"]["retrain"]["epochs"] == 1
    assert (keras.models.load_model(again / "model.keras").count_params()
            == model.count_params())


def test_train_micro_child_deeper(tmp_path):
    """tf-enas-train --retrain_num_cells=2 trains the micro child with 2 normal cells per
    stage: the saved model (with drop-path, which loads back) is the deeper child (5 cells)
    and has its parameter count."""
    import tf_enas.supernet  # noqa: F401  (registers the layers model.keras uses, as README)
    from tf_enas import found_child

    child = ("normal: 0:sepconv3+1:identity, 2:maxpool3+0:sepconv5 ; "
             "reduce: 1:avgpool3+0:sepconv3, 2:sepconv5+1:identity")
    proc = run("tf_enas.bin.train", f"--child={child}", "--space=micro", "--width=4",
               "--retrain_num_cells=2", "--retrain_drop_path=0.2", "--num_samples=600",
               "--retrain_epochs=1",
               f"--output_dir={tmp_path}", "--verbose=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = keras.models.load_model(tmp_path / "model.keras")
    assert sorted(l.name for l in model.layers if l.name.startswith("cell_")) == [
        f"cell_{c}" for c in range(5)]
    assert json.loads((tmp_path / "result.json").read_text())[
        "hyperparameters"]["retrain"]["num_cells"] == 2
    assert model.count_params() == found_child.child_model(child, (40, 1), 10, 4, "micro",
                                                           num_cells=2).count_params()


def test_train_rejects_bad_child(tmp_path):
    proc = run("tf_enas.bin.train", "--child=conv3 | conv9", f"--output_dir={tmp_path}")
    assert proc.returncode != 0 and "conv9" in proc.stderr
    proc = run("tf_enas.bin.train", "--child=conv3 | conv5", "--retrain_num_cells=2",
               f"--output_dir={tmp_path}")
    assert proc.returncode != 0 and "--retrain_num_cells" in proc.stderr
    proc = run("tf_enas.bin.train", "--child=conv3 | conv5", "--retrain_drop_path=0.2",
               f"--output_dir={tmp_path}")
    assert proc.returncode != 0 and "--retrain_drop_path" in proc.stderr
    proc = run("tf_enas.bin.train", f"--output_dir={tmp_path}")
    assert proc.returncode != 0 and "--child" in proc.stderr


def test_joint_search_alias_is_the_search_binary(tmp_path):
    proc = run("tf_enas.bin.joint_search", "--response=bogus", f"--output_dir={tmp_path}")
    assert proc.returncode != 0 and "--response" in proc.stderr, proc.stderr[-2000:]


FLAGFILES = sorted(p.name for p in (Path(__file__).parents[1] / "flags").glob("*.cfg"))


@pytest.mark.parametrize("flagfile", FLAGFILES)
def test_shipped_flagfile_parses_and_validates(flagfile):
    """Every flagfile in flags/ names only tf-enas-search's flags, with valid values, and
    gives a SearchConfig that validates (what tf-enas-search checks before it starts)."""
    from tf_enas.bin import common_flags

    path = Path(__file__).parents[1] / "flags" / flagfile
    try:
        flags.FLAGS(["tf-enas-search", f"--flagfile={path}", "--output_dir=/tmp/x"])
        config = common_flags.search_config().validate()
    finally:
        flags.FLAGS.unparse_flags()
    assert config.dataset == "mnist1d"


@pytest.mark.parametrize("method,flagfile", [
    ("joint, response=none", "mnist1d_joint.cfg"),
    ("joint + unrolled", "mnist1d_joint_unrolled.cfg"),
    ("joint + ift", "mnist1d_joint_ift.cfg")])
def test_joint_methods_run_the_flagfiles_settings(method, flagfile):
    """The benchmark's joint methods (whose cost BENCHMARKS.md reports as the flagfiles')
    search with their flagfile's controller and response settings."""
    from tf_enas.benchmarks import search_quality as sq
    from tf_enas.bin import common_flags

    path = Path(__file__).parents[1] / "flags" / flagfile
    try:
        flags.FLAGS(["tf-enas-search", f"--flagfile={path}", "--output_dir=/tmp/x"])
        shipped = common_flags.search_config()
    finally:
        flags.FLAGS.unparse_flags()
    _, overrides = sq.weight_sharing_methods()[method]
    benchmarked = sq.search_config("mnist1d", 0, 5.0, False, **overrides)
    fields = ("response", "response_every", "curvature", "gauss_newton_jvp",
              "cg_iterations", "cg_tol", "cg_damping", "reward", "lookahead_steps",
              "lookahead_batch_size", "controller_steps", "controller_batch",
              "val_batch_size", "num_layers", "width", "batch_size")
    assert ({f: getattr(benchmarked, f) for f in fields} ==
            {f: getattr(shipped, f) for f in fields})
