"""keras-tuner's chief/worker mode on 127.0.0.1: one chief (the PolicyOracle behind gRPC)
and two worker processes; every trial completes once, both workers take trials, the chief
learns from all of them and exits."""
import glob
import json
import os
import subprocess
import sys
import time

from tests.tuner import toy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRIALS = 8


def test_chief_and_two_workers(tmp_path):
    port = toy.free_port()
    procs = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log = open(tmp_path / f"{tuner_id}.log", "w")
        procs[tuner_id] = (subprocess.Popen(
            [sys.executable, "-m", "tests.tuner.distributed_main", str(tmp_path), str(TRIALS)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    deadline = time.time() + 240
    try:
        for tuner_id, (p, _) in procs.items():
            p.wait(timeout=max(1, deadline - time.time()))
    finally:
        for p, log in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    logs = {k: (tmp_path / f"{k}.log").read_text()[-3000:] for k in procs}
    for tuner_id, (p, _) in procs.items():
        assert p.returncode == 0, (tuner_id, logs[tuner_id])

    with open(tmp_path / "chief_summary.json") as f:
        summary = json.load(f)
    ran = {}
    for path in glob.glob(str(tmp_path / "records" / "*.json")):
        tuner_id, trial_id = os.path.basename(path)[:-5].split("_")
        assert trial_id not in ran, f"trial {trial_id} ran twice"
        with open(path) as f:
            ran[trial_id] = (tuner_id, json.load(f))
    assert sorted(ran) == sorted(summary["trials"]) and len(ran) == TRIALS
    by_worker = {w: [t for t, (tid, _) in ran.items() if tid == w] for w in ("tuner0", "tuner1")}
    assert all(by_worker.values()), by_worker  # both workers took trials
    for trial_id, (_, values) in ran.items():
        chief = summary["trials"][trial_id]
        assert chief["status"] == "COMPLETED"
        assert values == chief["values"]  # the worker ran what the oracle decided
    assert summary["num_updates"] == TRIALS * summary["steps_per_trial"]
    assert len(summary["rewards"]) == TRIALS
