"""tf.distribute for the search (tf_enas/distribute.py): a mirrored step on 2 logical CPU
devices is the single-device step on the same global batch (plain and joint search with an
unrolled response), checkpoints read back across strategies, and a multi-worker run of 2
local processes is killed and resumes from the chief's checkpoint. The 2 logical devices
must be configured before TensorFlow starts, so these run in fresh processes (which also
keeps them independent of pytest-xdist's workers)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tf_enas import distribute
from tf_enas.search_config import SearchConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)


@pytest.fixture(scope="module")
def mirrored():
    proc = subprocess.run([sys.executable, "-m", "tests.distribute_check"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=400)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("kind", ["plain", "joint"])
def test_mirrored_step_equals_single_device_step(mirrored, kind):
    r = mirrored
    assert r["devices"] == 2
    assert r[f"{kind}/default/replicas"] == 1 and r[f"{kind}/mirrored/replicas"] == 2
    for group in ("supernet", "velocity", "controller"):
        assert r[f"{kind}/{group}/initial_diff"] == 0.0  # same seed, same initial state
        assert r[f"{kind}/{group}/moved"] > 1e-3          # the steps changed something
        # weights, BN statistics, velocity and controller after train, controller
        # (+ response for joint), train: the single-device numbers to 1e-5
        assert r[f"{kind}/{group}/diff"] <= 1e-5, (group, r[f"{kind}/{group}/diff"])
    assert r[f"{kind}/log_diff"] <= 1e-5
    # the mirrored run's checkpoint restored under the default strategy: bit for bit
    assert r[f"{kind}/restored_diff"] == 0.0


def test_batch_must_split_evenly(mirrored):
    assert "batch_size 33 must be a multiple of the 2 replicas" in mirrored["odd_batch_error"]


def test_bad_strategy_settings_are_named(monkeypatch):
    with pytest.raises(ValueError, match="strategy must be one of"):
        SearchConfig(strategy="tpu").validate()
    with pytest.raises(ValueError, match="space=macro only"):
        SearchConfig(strategy="mirrored", space="micro").validate()
    with pytest.raises(ValueError, match="jit_compile runs under strategy=default only"):
        SearchConfig(strategy="mirrored", jit_compile=True).validate()
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        SearchConfig(mixed_precision="float16").validate()
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG environment variable, which is not set"):
        distribute.strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON"):
        distribute.strategy("multi_worker")
    # the runtime settings stay out of config.json: a run resumes under another strategy
    assert "strategy" not in SearchConfig(strategy="mirrored").to_json()


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


TINY = ["--num_samples=600", "--num_layers=2", "--width=4", "--batch_size=64", "--epochs=3",
        "--controller_steps=2", "--controller_batch=4", "--val_batch_size=32",
        "--derive_samples=4", "--retrain_epochs=1", "--controller_lstm_size=8", "--verbose=1",
        "--ops=conv3", "--ops=maxpool3", "--strategy=multi_worker"]


def _launch(out, ports, logs):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": i}}))
        with open(logs[i], "w") as f:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tf_enas.bin.search", *TINY, f"--output_dir={out}"],
                cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT))
    return procs


def _kill(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()


def test_multi_worker_run_killed_and_resumed(tmp_path):
    out, logs = tmp_path / "run", [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    procs = _launch(out, _free_ports(2), logs)
    try:  # killed once the chief wrote its first checkpoint
        deadline = time.time() + 180
        # the manager's state file lists ckpt-1 only after its files are complete; a kill
        # between the two loses that checkpoint, so wait for the list, not the index file
        while tf.train.latest_checkpoint(str(out / "checkpoints")) is None:
            assert time.time() < deadline and all(p.poll() is None for p in procs), \
                logs[0].read_text()[-3000:]
            time.sleep(0.05)
    finally:
        _kill(procs)
    assert not (out / "result.json").exists()
    procs = _launch(out, _free_ports(2), logs)
    try:
        for p in procs:
            assert p.wait(timeout=240) == 0, logs[0].read_text()[-3000:] + logs[1].read_text()[-3000:]
    finally:
        _kill(procs)
    chief = logs[0].read_text()
    resumed = [int(line.split()[-1]) for line in chief.splitlines()
               if line.startswith("resumed from")]
    assert resumed and 1 <= resumed[0] < 3, chief[-3000:]  # from the checkpoint, not anew
    assert "search done" in logs[1].read_text()
    result = json.loads((out / "result.json").read_text())
    assert result["epochs"] == 3 and len(result["history"]) == 3
    # only the chief wrote into the output dir
    assert sorted(os.listdir(out / "checkpoints"))[-1] == "ckpt-3.index"
