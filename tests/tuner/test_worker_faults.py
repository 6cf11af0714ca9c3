"""A keras-tuner worker killed in the middle of a trial (WorkerFaults, in PolicyOracle).

Two end-to-end cases on 127.0.0.1 (chief + 2 worker processes, worker_fault_main.py; the
worker "tuner0" is SIGKILLed while it sits inside its first trial): restarted under the
same id it re-runs that trial; never restarted, its trial is declared lost after
trial_timeout_s and re-run by the other worker. Both: the chief's search() returns, every
trial ended COMPLETED or FAILED exactly once, the oracle took one reward per trial (equal
to the toy score of the values the chief decided) and one controller step per scored
trial. In-process cases (a fake clock) cover a lost trial without retries (FAILED), late
reports of the presumed-dead worker, idle workers waiting for a retry, the failure limit,
and the state round trip.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras_tuner as kt
import pytest

from tf_enas.tuner import PolicyOracle
from tests.tuner import toy

Status = kt.engine.trial.TrialStatus
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRIALS = 6


class Cluster:
    """A chief and workers running worker_fault_main.py, each logging to DIR/<id>.log."""

    def __init__(self, directory, timeout_s, retries):
        self.dir, self.port = directory, toy.free_port()
        self.args = [str(directory), str(TRIALS), str(timeout_s), str(retries)]
        self.procs, self.logs = {}, []

    def start(self, tuner_id):
        env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=str(self.port), TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log = open(self.dir / f"{tuner_id}.log", "a")
        self.logs.append(log)
        self.procs[tuner_id] = subprocess.Popen(
            [sys.executable, "-m", "tests.tuner.worker_fault_main", *self.args],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self.procs[tuner_id]

    def log_tail(self, tuner_id):
        return (self.dir / f"{tuner_id}.log").read_text()[-3000:]

    def wait_for_file(self, name, timeout):
        path, deadline = self.dir / name, time.time() + timeout
        while not path.exists():
            dead = {k: p.returncode for k, p in self.procs.items() if p.poll() is not None}
            assert not dead and time.time() < deadline, (
                f"no {name} after {timeout} s; exited: {dead}; "
                f"logs: {[self.log_tail(k) for k in self.procs]}")
            time.sleep(0.1)
        return path.read_text()

    def wait_all(self, timeout):
        deadline = time.time() + timeout
        for tuner_id, p in self.procs.items():
            try:
                p.wait(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{tuner_id} still running after {timeout} s (the chief must "
                            f"not wait forever on a dead worker):\n{self.log_tail(tuner_id)}")
        for tuner_id, p in self.procs.items():
            assert p.returncode == 0, (tuner_id, p.returncode, self.log_tail(tuner_id))

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in self.logs:
            log.close()


def _run_with_killed_worker(tmp_path, timeout_s, restart):
    cluster = Cluster(tmp_path, timeout_s, retries=1)
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            cluster.start(tuner_id)
        victim = cluster.procs["tuner0"]
        # tuner0 writes the file from inside its first trial, then sleeps there
        victim_trial = cluster.wait_for_file("victim_trial", timeout=120)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
        del cluster.procs["tuner0"]
        if restart:
            cluster.start("tuner0")
        cluster.wait_all(timeout=150)
    finally:
        cluster.close()
    with open(tmp_path / "chief_summary.json") as f:
        summary = json.load(f)
    runs = {}  # trial id → [(tuner id, pid, values)] of each run that completed
    for path in glob.glob(str(tmp_path / "records" / "*.json")):
        tuner_id, trial_id, pid = os.path.basename(path)[:-5].split("_")
        with open(path) as f:
            runs.setdefault(trial_id, []).append((tuner_id, int(pid), json.load(f)))
    return summary, runs, victim_trial, victim.pid


def _assert_every_trial_accounted_for(summary, runs):
    trials = summary["trials"]
    assert sorted(trials) == [str(i) for i in range(TRIALS)]  # max_trials, ids 0..5
    assert summary["ongoing"] == {} and summary["retry_queue"] == []
    assert sorted(summary["end_order"]) == sorted(trials)  # each ended exactly once
    assert {t["status"] for t in trials.values()} <= {"COMPLETED", "FAILED"}
    assert sorted(summary["rewards"]) == sorted(trials)
    for trial_id, trial in trials.items():
        reward = summary["rewards"][trial_id]
        if trial["status"] == "COMPLETED":
            # one completed run, of the values the chief decided, scored by the oracle
            (_, _, values), = runs[trial_id]
            assert values == trial["values"]
            assert not reward["failed"]
            assert reward["reward"] == pytest.approx(toy.conditional_score(values))
        else:
            assert trial_id not in runs and reward["failed"]
    # the controller's steps on every scored trial, once
    assert summary["num_updates"] == summary["steps_per_trial"] * sum(
        r["reward"] is not None for r in summary["rewards"].values())


def test_killed_worker_restarted_under_its_id_reruns_its_trial(tmp_path):
    summary, runs, victim_trial, killed_pid = _run_with_killed_worker(
        tmp_path, timeout_s=300, restart=True)
    _assert_every_trial_accounted_for(summary, runs)
    assert all(t["status"] == "COMPLETED" for t in summary["trials"].values())
    assert summary["num_updates"] == TRIALS * summary["steps_per_trial"]
    # the restarted tuner0 (another process) ran the trial it held, as its first run
    (tuner_id, pid, _), = runs[victim_trial]
    assert tuner_id == "tuner0" and pid != killed_pid
    assert summary["run_times"][victim_trial] == 1 and summary["lost_trials"] == []


def test_killed_worker_that_never_returns_loses_its_trial_to_a_retry(tmp_path):
    # 8 s: well above the survivor's gaps between calls on a loaded 2-core machine
    summary, runs, victim_trial, _ = _run_with_killed_worker(tmp_path, timeout_s=8,
                                                             restart=False)
    _assert_every_trial_accounted_for(summary, runs)
    assert all(t["status"] == "COMPLETED" for t in summary["trials"].values())
    assert summary["num_updates"] == TRIALS * summary["steps_per_trial"]
    # declared lost after 8 s of silence, then re-run once, by tuner1
    (tuner_id, _, _), = runs[victim_trial]
    assert tuner_id == "tuner1"
    assert summary["run_times"][victim_trial] == 2
    (lost,) = summary["lost_trials"]
    assert (lost["tuner_id"], lost["trial_id"], lost["outcome"]) == \
        ("tuner0", victim_trial, "retry")
    assert lost["silent_s"] > 8


# --- in process, with a fake clock ------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _oracle(tmp_path, **kwargs):
    hp = kt.HyperParameters()
    toy.conditional_space(hp)
    kwargs = dict(dict(objective=kt.Objective("score", "max"), max_trials=4, seed=4,
                       trial_timeout_s=10, hyperparameters=hp), **kwargs)
    oracle = PolicyOracle(**kwargs)
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.clock, oracle.idle_poll_s = Clock(), 0.0
    return oracle


def _finish(oracle, trial, score):
    """A worker's report of `trial` (its copy, as over gRPC) with this score."""
    oracle.update_trial(trial.trial_id, {"score": score})
    wire = kt.engine.trial.Trial.from_proto(trial.to_proto())
    wire.status = Status.COMPLETED
    oracle.end_trial(wire)


def _json(state):
    """The oracle state as JSON; keras-tuner's tried_so_far is a set (saved as a list in
    the set's arbitrary order)."""
    return json.dumps(dict(state, tried_so_far=sorted(state["tried_so_far"])), sort_keys=True)


def _trials_learned(oracle):
    """Trials the controller learned from (each is `update.steps` controller steps)."""
    steps, per_trial = int(oracle.controller.num_updates.numpy()), oracle.update.steps
    assert steps % per_trial == 0
    return steps // per_trial


def test_lost_trial_without_retries_fails_once_and_late_reports_are_ignored(tmp_path):
    oracle = _oracle(tmp_path)
    lost, kept = oracle.create_trial("a"), oracle.create_trial("b")
    assert oracle.create_trial("a").trial_id == lost.trial_id  # a restart gets it back
    _finish(oracle, kept, 1.0)
    oracle.clock.now += 9
    assert oracle.reap_lost_workers() == [] and "a" in oracle.ongoing_trials
    oracle.clock.now += 2  # 11 s without a call from "a"
    nxt = oracle.create_trial("b")  # b's call finds a lost
    assert nxt.trial_id not in (lost.trial_id, kept.trial_id)
    own = oracle.trials[lost.trial_id]
    assert own.status == Status.FAILED and "worker 'a' was lost" in own.message
    assert oracle.lost_trials == [{"tuner_id": "a", "trial_id": lost.trial_id,
                                   "silent_s": 11.0, "outcome": "FAILED"}]
    assert "a" not in oracle.tuner_ids and "a" not in oracle.ongoing_trials
    assert oracle.rewards[lost.trial_id] == {"reward": 1.0, "failed": True}  # worst so far
    assert _trials_learned(oracle) == 2
    state = _json(oracle.get_state())

    # the presumed-dead worker reports after all: nothing changes
    oracle.update_trial(lost.trial_id, {"score": 99.0})
    late = kt.engine.trial.Trial.from_proto(lost.to_proto())
    late.status = Status.COMPLETED
    oracle.end_trial(late)
    assert own.status == Status.FAILED and not own.metrics.exists("score")
    assert oracle.end_order.count(lost.trial_id) == 1 and _trials_learned(oracle) == 2
    assert _json(oracle.get_state()) == state

    # the state (with lost_trials) reloads exactly
    _finish(oracle, nxt, 2.0)
    fresh = _oracle(tmp_path)
    fresh.reload()
    assert _json(fresh.get_state()) == _json(oracle.get_state())
    assert fresh.lost_trials == oracle.lost_trials


def test_lost_trial_is_retried_once_the_first_end_wins_and_idle_workers_wait(tmp_path):
    oracle = _oracle(tmp_path, max_retries_per_trial=1, max_trials=2)
    lost, kept = oracle.create_trial("a"), oracle.create_trial("b")
    _finish(oracle, kept, 1.0)
    # max_trials reached, but a's trial may still need a retry: b waits instead of stopping
    assert oracle.create_trial("b").status == Status.IDLE and "b" in oracle.tuner_ids
    oracle.clock.now += 11
    retry = oracle.create_trial("b")
    assert retry.trial_id == lost.trial_id and retry.status == Status.RUNNING
    assert oracle._run_times[lost.trial_id] == 1
    assert oracle.lost_trials[0]["outcome"] == "retry"
    assert oracle.rewards.keys() == {kept.trial_id}  # no reward for a trial sent for retry

    # a's late result arrives while b runs the retry: a report cannot name its worker, so
    # the first end ends the trial; b's later report is ignored
    _finish(oracle, lost, 5.0)
    _finish(oracle, retry, 7.0)
    own = oracle.trials[lost.trial_id]
    assert own.status == Status.COMPLETED and own.score == 5.0
    assert oracle.rewards[lost.trial_id] == {"reward": 5.0, "failed": False}
    assert oracle.end_order == [kept.trial_id, lost.trial_id] and _trials_learned(oracle) == 2
    assert oracle._run_times[lost.trial_id] == 2 and oracle.ongoing_trials == {}
    assert oracle.create_trial("b").status == Status.STOPPED and not oracle.tuner_ids


def test_idle_polls_on_an_exhausted_space_sample_nothing(tmp_path):
    hp = kt.HyperParameters()
    hp.Boolean("flag")  # two configurations
    oracle = _oracle(tmp_path, hyperparameters=hp, max_retries_per_trial=1, max_trials=10)
    held, done = oracle.create_trial("a"), oracle.create_trial("b")
    _finish(oracle, done, 1.0)
    assert oracle.create_trial("b").status == Status.IDLE  # exhausted, a may need a retry
    rng = oracle.controller.rng.state.numpy().copy()
    assert oracle.create_trial("b").status == Status.IDLE
    assert (oracle.controller.rng.state.numpy() == rng).all()  # no new sampling
    _finish(oracle, held, 2.0)
    assert [oracle.create_trial(t).status for t in "ab"] == [Status.STOPPED] * 2
    assert oracle.tuner_ids == set() and len(oracle.trials) == 2


def test_lost_trial_at_the_failure_limit_stops_the_search(tmp_path):
    oracle = _oracle(tmp_path, max_consecutive_failed_trials=1)
    lost, other = oracle.create_trial("a"), oracle.create_trial("b")
    oracle.clock.now += 11
    oracle.update_trial(other.trial_id, {"score": 1.0})  # b is alive, a silent for 11 s
    assert [(e["trial_id"], e["outcome"]) for e in oracle.reap_lost_workers()] == [
        (lost.trial_id, "FAILED")]
    assert oracle.ongoing_trials.keys() == {"b"}  # keras-tuner raised before releasing it
    stopped = oracle.create_trial("c")
    assert stopped.status == Status.STOPPED
    assert "consecutive failures exceeded the limit of 1" in stopped.message
    assert oracle.create_trial("b").trial_id == other.trial_id  # b finishes what it holds


def test_trial_timeout_is_validated():
    with pytest.raises(ValueError, match="trial_timeout_s must be > 0"):
        PolicyOracle(objective="val_accuracy", trial_timeout_s=0)
    assert PolicyOracle(objective="val_accuracy", trial_timeout_s=None).reap_lost_workers() == []
