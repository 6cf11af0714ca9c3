"""Keras-free tuners and hypermodels for the tuner tests (trials cost microseconds)."""
import json
import os
import time

import keras_tuner as kt


class ScoreTuner(kt.engine.base_tuner.BaseTuner):
    """Builds the hypermodel (declares the space) and returns {"score": score_fn(values)}.

    `score_fn` may raise (the trial fails); `crash_at` raises kt.errors.FatalError on that
    trial id (a killed search); `record_dir` gets one file per trial run by this tuner.
    """

    def __init__(self, oracle, hypermodel, score_fn, crash_at=None, record_dir=None,
                 trial_seconds=0.0, **kwargs):
        self.score_fn, self.crash_at = score_fn, crash_at
        self.record_dir, self.trial_seconds = record_dir, trial_seconds
        super().__init__(oracle, hypermodel, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        if trial.trial_id == self.crash_at:
            raise kt.errors.FatalError(f"simulated kill at trial {trial.trial_id}")
        self.hypermodel.build(trial.hyperparameters)
        values = dict(trial.hyperparameters.values)
        if self.trial_seconds:
            time.sleep(self.trial_seconds)
        if self.record_dir:
            path = os.path.join(self.record_dir, f"{self.tuner_id}_{trial.trial_id}.json")
            with open(path, "w") as f:
                json.dump(values, f)
        return {"score": self.score_fn(values)}


def conditional_space(hp):
    """A conditional space: model ∈ {mlp, cnn}; mlp → units; cnn → kernel, pool (→ pool_size)."""
    model = hp.Choice("model", ["mlp", "cnn"])
    with hp.conditional_scope("model", ["mlp"]):
        hp.Int("units", 8, 64, step=8)
    with hp.conditional_scope("model", ["cnn"]):
        hp.Choice("kernel", [3, 5, 7])
        hp.Boolean("pool")
        with hp.conditional_scope("pool", [True]):
            hp.Int("pool_size", 2, 4)
    hp.Float("lr", 1e-4, 1e-1, sampling="log")
    return model


def conditional_score(values):
    """Deterministic score of a conditional_space trial (higher is better)."""
    s = {"mlp": 0.3, "cnn": 0.5}[values["model"]] - abs(values["lr"] - 0.01)
    if values["model"] == "mlp":
        s += values["units"] / 640
    else:
        s += {3: 0.0, 5: 0.1, 7: 0.05}[values["kernel"]]
        s += 0.1 * values.get("pool_size", 0) if values["pool"] else 0.0
    return s


def wait_for_workers(directory: str, tuner_id: str, workers: int, timeout_s: float = 120):
    """A worker marks itself ready and waits (up to timeout_s) until `workers` are, so that
    every worker asks the chief for trials from the start."""
    open(os.path.join(directory, f"ready_{tuner_id}"), "w").close()
    deadline = time.time() + timeout_s
    while (sum(f.startswith("ready_") for f in os.listdir(directory)) < workers
           and time.time() < deadline):
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def search_in_role(tuner_cls, oracle, directory: str, project_name: str, workers: int):
    """One process of a distributed test search: the tuner over the toy space (trials of
    0.3 s recorded in DIR/records), workers waiting for each other first; returns its
    KERASTUNER_TUNER_ID once the search is over for it."""
    tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    records = os.path.join(directory, "records")
    os.makedirs(records, exist_ok=True)
    tuner = tuner_cls(oracle, conditional_space, conditional_score, record_dir=records,
                      trial_seconds=0.3, directory=directory, project_name=project_name)
    if tuner_id != "chief":
        wait_for_workers(directory, tuner_id, workers)
    tuner.search(verbose=0)
    return tuner_id
