"""tf-enas-train: train one child from scratch, given as text or by a search's result.json.

    tf-enas-train --child="conv3 | conv5+0 | maxpool3" --output_dir=runs/child
    tf-enas-train --child="tanh | 0:relu | 1:sigmoid" --space=rnn_cell --output_dir=runs/cell
    tf-enas-train --from_result=runs/enas/result.json --output_dir=runs/again

With --from_result the child is trained as its search chose: its space, width, searched
hyperparameters (learning rate, momentum, weight decays) and the search's retrain
settings; a --retrain_* or --width flag given on the command line overrides the latter.
"""
from __future__ import annotations

import dataclasses
import json
import os

from absl import app, flags, logging

from tf_enas import data, files, found_child, retrain
from tf_enas.bin import common_flags

FLAGS = flags.FLAGS
common_flags.define_data_flags()
common_flags.define_retrain_flags()
flags.DEFINE_string("child", None, "The child as text, e.g. 'conv3 | conv5+0 ; "
                    "learning_rate=0.003' (the 'architecture' of a result.json).")
flags.DEFINE_string("from_result", None, "A search's result.json: trains its architecture "
                    "with its hyperparameters.")
flags.DEFINE_enum("space", None, list(found_child.SPACES), "The --child's search space "
                  "(default macro; with --from_result, the search's).")
flags.DEFINE_integer("num_cells", None, "micro: normal cells per stage (default 1; with "
                     "--from_result, the search's).", lower_bound=1)
flags.DEFINE_integer("width", 64, "Channels of every layer when --retrain_width is unset "
                     "(with --from_result: the search's width unless given).", lower_bound=1)
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity.", lower_bound=0, upper_bound=2)
flags.register_multi_flags_validator(
    ["child", "from_result"], lambda f: bool(f["child"]) != bool(f["from_result"]),
    "give exactly one of --child and --from_result")


def _what_to_train() -> dict:
    """found_child.from_result of --from_result, with the command line's flags on top; or
    the --child with the flags alone."""
    flagged = common_flags.retrain_config()
    if not FLAGS.from_result:
        return {"architecture": FLAGS.child, "space": FLAGS.space or "macro",
                "num_cells": FLAGS.num_cells or 1, "width": FLAGS.width,
                "hyperparameters": {}, "retrain": flagged}
    if not os.path.exists(FLAGS.from_result):
        raise app.UsageError(f"--from_result: no such file {FLAGS.from_result!r}")
    with open(FLAGS.from_result) as f:
        try:
            found = found_child.from_result(json.load(f))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise app.UsageError(f"--from_result: {FLAGS.from_result!r} is not a search's "
                                 f"result.json ({e})") from None
    given = {f.name: getattr(flagged, f.name) for f in dataclasses.fields(flagged)
             if f"retrain_{f.name}" in FLAGS and FLAGS[f"retrain_{f.name}"].present}
    found["retrain"] = dataclasses.replace(found["retrain"], **given)
    for name in ("space", "num_cells", "width"):
        if FLAGS[name].present:
            found[name] = FLAGS[name].value
    if FLAGS["num_cells"].present and "num_cells" not in given:  # --num_cells over the result's
        found["retrain"] = dataclasses.replace(found["retrain"], num_cells=None)
    found["width"] = found["width"] or FLAGS.width
    return found


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        job = _what_to_train()
        found, child = found_child.space_of(job["architecture"], job["space"])
        job["retrain"].validate().check_space(job["space"])
    except ValueError as e:
        raise app.UsageError(f"bad flag value: {e}") from None
    splits = data.load(FLAGS.dataset, FLAGS.seed, FLAGS.val_fraction, path=FLAGS.dataset_path,
                       num_samples=FLAGS.num_samples)
    common_flags.check_targets(splits, job["space"])
    import keras
    keras.utils.set_random_seed(FLAGS.seed)
    config = job["retrain"]
    try:
        model = found_child.child_model(job["architecture"], splits.input_shape,
                                        splits.num_classes, config.width or job["width"],
                                        job["space"], config.num_cells or job["num_cells"],
                                        config.dropout, config.drop_path,
                                        splits.sequence_targets)
    except ValueError as e:
        raise app.UsageError(f"--child: {e}") from None
    hyperparameters = found.hyperparameters(child) | job["hyperparameters"]
    metrics = retrain.train(model, splits, config, hyperparameters, verbose=FLAGS.verbose)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    files.save_model(model, os.path.join(FLAGS.output_dir, "model.keras"))
    result = {"architecture": found.to_string(child), "space": job["space"],
              "hyperparameters": hyperparameters | {"retrain": dataclasses.asdict(config)},
              **metrics}
    files.write_json(os.path.join(FLAGS.output_dir, "result.json"), result)
    print(json.dumps(result, indent=2))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
