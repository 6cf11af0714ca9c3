"""One process of the worker-fault test:
`python -m tests.tuner.worker_fault_main DIR TRIALS TIMEOUT_S RETRIES`.

As distributed_main.py (chief or worker by keras-tuner's environment), except that the
worker "tuner0" blocks inside its first trial, after writing DIR/victim_trial (the trial
id), until the test kills it; restarted (the file exists), it runs its trials normally.
Each run writes DIR/records/<tuner id>_<trial id>_<pid>.json; the chief writes
DIR/chief_summary.json when its search() returns.
"""
import json
import os
import sys
import time

import keras_tuner as kt

from tf_enas.tuner import PolicyOracle
from tests.tuner import toy

VICTIM = "tuner0"


class FaultTuner(toy.ScoreTuner):
    def run_trial(self, trial, *args, **kwargs):
        marker = os.path.join(os.path.dirname(self.project_dir), "victim_trial")
        if self.tuner_id == VICTIM and not os.path.exists(marker):
            with open(marker + ".tmp", "w") as f:
                f.write(trial.trial_id)
            os.replace(marker + ".tmp", marker)
            time.sleep(600)  # killed here by the test
            raise RuntimeError("the test was to kill this worker in the middle of a trial")
        result = super().run_trial(trial, *args, **kwargs)
        path = os.path.join(self.record_dir, f"{self.tuner_id}_{trial.trial_id}.json")
        os.replace(path, path[:-5] + f"_{os.getpid()}.json")
        return result


def main(directory, max_trials, timeout_s, retries, workers=2):
    oracle = PolicyOracle(objective=kt.Objective("score", "max"), max_trials=max_trials,
                          seed=3, max_retries_per_trial=retries, trial_timeout_s=timeout_s)
    if toy.search_in_role(FaultTuner, oracle, directory, "faults", workers) == "chief":
        summary = {
            "trials": {t.trial_id: {"status": t.status, "values": t.hyperparameters.values,
                                    "message": t.message}
                       for t in oracle.trials.values()},
            "ongoing": {k: t.trial_id for k, t in oracle.ongoing_trials.items()},
            "retry_queue": list(oracle._retry_queue),
            "run_times": dict(oracle._run_times),
            "end_order": list(oracle.end_order),
            "lost_trials": oracle.lost_trials,
            "num_updates": int(oracle.controller.num_updates.numpy()),
            "steps_per_trial": oracle.update.steps,
            "rewards": oracle.rewards,
        }
        with open(os.path.join(directory, "chief_summary.json"), "w") as f:
            json.dump(summary, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
