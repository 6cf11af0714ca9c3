"""One process of the distributed test: `python -m tests.tuner.distributed_main DIR TRIALS`.

The role comes from keras-tuner's environment (KERASTUNER_TUNER_ID "chief" or a worker id,
KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT). Workers wait for each other (files in DIR)
so that both take trials; the chief writes DIR/chief_summary.json when it exits.
"""
import json
import os
import sys

import keras_tuner as kt

from tf_enas.tuner import PolicyOracle
from tests.tuner import toy


def main(directory, max_trials, workers=2):
    oracle = PolicyOracle(objective=kt.Objective("score", "max"), max_trials=max_trials, seed=3)
    if toy.search_in_role(toy.ScoreTuner, oracle, directory, "dist", workers) == "chief":
        summary = {
            "trials": {t.trial_id: {"status": t.status, "values": t.hyperparameters.values}
                       for t in oracle.trials.values()},
            "num_updates": int(oracle.controller.num_updates.numpy()),
            "steps_per_trial": oracle.update.steps,
            "rewards": oracle.rewards,
        }
        with open(os.path.join(directory, "chief_summary.json"), "w") as f:
            json.dump(summary, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
