"""tf-enas-train: train one child from scratch, given as text or by a search's result.json.

    tf-enas-train --child="conv3 | conv5+0 | maxpool3" --output_dir=runs/child
    tf-enas-train --from_result=runs/enas/result.json --output_dir=runs/again
"""
from __future__ import annotations

import json
import os

from absl import app, flags, logging

from tf_enas import data, files, retrain
from tf_enas.bin import common_flags
from tf_enas.space import SearchSpace
from tf_enas.supernet import build_child_model

FLAGS = flags.FLAGS
common_flags.define_data_flags()
common_flags.define_retrain_flags()
flags.DEFINE_string("child", None, "The child as text, e.g. 'conv3 | conv5+0 ; "
                    "learning_rate=0.003' (the 'architecture' of a result.json).")
flags.DEFINE_string("from_result", None, "A search's result.json: trains its architecture "
                    "with its hyperparameters.")
flags.DEFINE_integer("width", 64, "Channels of every layer (when --retrain_width is unset).",
                     lower_bound=1)
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity.", lower_bound=0, upper_bound=2)
flags.register_multi_flags_validator(
    ["child", "from_result"], lambda f: bool(f["child"]) != bool(f["from_result"]),
    "give exactly one of --child and --from_result")


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    text = FLAGS.child
    if FLAGS.from_result:
        if not os.path.exists(FLAGS.from_result):
            raise app.UsageError(f"--from_result: no such file {FLAGS.from_result!r}")
        with open(FLAGS.from_result) as f:
            text = json.load(f)["architecture"]
    try:
        space = SearchSpace.of_child(text)
        child = space.parse(text)
        config = common_flags.retrain_config()
    except ValueError as e:
        raise app.UsageError(f"bad flag value: {e}") from None
    if space.num_layers == 0:
        raise app.UsageError("--child: needs at least one layer, like 'conv3 | conv5+0'")
    splits = data.load(FLAGS.dataset, FLAGS.seed, FLAGS.val_fraction, path=FLAGS.dataset_path,
                       num_samples=FLAGS.num_samples)
    import keras
    keras.utils.set_random_seed(FLAGS.seed)
    model = build_child_model(space, child, splits.input_shape, splits.num_classes,
                              config.width or FLAGS.width, config.dropout)
    metrics = retrain.train(model, splits, config, space.hyperparameters(child),
                            verbose=FLAGS.verbose)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    files.save_model(model, os.path.join(FLAGS.output_dir, "model.keras"))
    result = {"architecture": space.to_string(child),
              "hyperparameters": space.hyperparameters(child), **metrics}
    files.write_json(os.path.join(FLAGS.output_dir, "result.json"), result)
    print(json.dumps(result, indent=2))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
