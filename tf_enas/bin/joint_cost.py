"""Per-epoch wall time of the joint search's responses, side by side in one process.

    python -m tf_enas.bin.joint_cost --cost_epochs=3 --output_dir=/tmp/unused \
        flags/mnist1d_joint.cfg flags/mnist1d_joint_unrolled.cfg flags/mnist1d_joint_ift.cfg

Each flagfile runs `--epochs` search epochs (the first one traces and is reported apart);
prints the mean seconds of the later epochs and the ratio to the first flagfile.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import tempfile

from absl import app, flags

from tf_enas.bin import common_flags
from tf_enas.bin import search  # noqa: F401  (defines the search flags)
from tf_enas.search import Search

FLAGS = flags.FLAGS
flags.DEFINE_integer("cost_epochs", 3, "Epochs per flagfile (the first one is warm-up).",
                     lower_bound=2)


def measure(flagfile: str, epochs: int) -> dict:
    FLAGS.unparse_flags()
    FLAGS([sys.argv[0], f"--flagfile={flagfile}", "--output_dir=unused"])
    config = dataclasses.replace(common_flags.search_config(), epochs=epochs, time_budget_s=None)
    with tempfile.TemporaryDirectory() as out:
        history = Search(config.validate(), out, verbose=0).search()
    later = [h["seconds"] for h in history[1:]]
    return {"flagfile": flagfile, "response": config.response,
            "first_epoch_s": history[0]["seconds"], "epoch_s": sum(later) / len(later)}


def main(argv):
    epochs = FLAGS.cost_epochs
    rows = []
    for f in argv[1:]:
        rows.append(measure(f, epochs))
        rows[-1]["ratio_to_first"] = rows[-1]["epoch_s"] / rows[0]["epoch_s"]
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    app.run(main)
