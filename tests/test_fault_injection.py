"""A search binary killed (SIGKILL) at 5 random points and restarted each time ends with the
same result.json (child, hyperparameters, accuracies) and model weights as an uninterrupted
run with the same seed: checkpoints, stamps and the lock leave nothing half done."""
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TINY = ["--num_samples=600", "--num_layers=2", "--width=4", "--batch_size=64", "--epochs=3",
        "--controller_steps=2", "--controller_batch=4", "--val_batch_size=32",
        "--derive_samples=4", "--retrain_epochs=4", "--controller_lstm_size=8", "--verbose=0"]
SAME = ("architecture", "hyperparameters", "optimizer_hyperparameters", "val_accuracy",
        "test_accuracy", "shared_weights_val_accuracy", "epochs", "skipped_steps")


def _command(out):
    return [sys.executable, "-m", "tf_enas.bin.search", *TINY, f"--output_dir={out}"]


def _finished(out):
    result = json.loads((out / "result.json").read_text())
    weights = keras.models.load_model(out / "model.keras").get_weights()
    return {k: result[k] for k in SAME}, weights


def test_killed_five_times_equals_uninterrupted(tmp_path):
    start = time.time()
    subprocess.run(_command(tmp_path / "straight"), check=True, env=ENV, timeout=900)
    wall = time.time() - start
    out = tmp_path / "killed"
    kills = 0
    for fraction in np.random.default_rng(0).uniform(0.2, 0.6, size=5):
        proc = subprocess.Popen(_command(out), env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=fraction * wall)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    subprocess.run(_command(out), check=True, env=ENV, timeout=900)
    assert kills >= 3  # most restarts were cut short somewhere in search, derive or retrain
    (want, want_w), (got, got_w) = _finished(tmp_path / "straight"), _finished(out)
    assert got == want
    for a, b in zip(want_w, got_w):
        np.testing.assert_array_equal(a, b)
