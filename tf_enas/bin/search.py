"""tf-enas-search: ENAS search (+ derive + retrain) from flags.

    tf-enas-search --flagfile=flags/mnist1d_enas.cfg --output_dir=runs/enas
"""
from __future__ import annotations

import json

from absl import app, flags, logging

from tf_enas.bin import common_flags
from tf_enas.search import Search, SearchConfig

FLAGS = flags.FLAGS
common_flags.define_data_flags()
common_flags.define_search_flags()
common_flags.define_retrain_flags()
flags.DEFINE_list("learning_rates", [], "Grid of shared-step learning rates for the "
                  "controller to choose (empty: fixed --lr_max).")
flags.DEFINE_list("weight_decays", [], "Grid of L2 coefficients for the controller to choose "
                  "(empty: fixed --l2).")
flags.register_validator("learning_rates", lambda v: all(
    _is_positive_number(x) for x in v), "--learning_rates must be positive numbers")
flags.register_validator("weight_decays", lambda v: all(
    _is_positive_number(x, allow_zero=True) for x in v),
    "--weight_decays must be non-negative numbers")


def _is_positive_number(x, allow_zero=False):
    try:
        return float(x) >= 0 if allow_zero else float(x) > 0
    except ValueError:
        return False


def config_from_flags() -> SearchConfig:
    choices = {}
    if FLAGS.learning_rates:
        choices["learning_rate"] = common_flags.float_list("learning_rates", FLAGS.learning_rates)
    if FLAGS.weight_decays:
        choices["weight_decay"] = common_flags.float_list("weight_decays", FLAGS.weight_decays)
    return SearchConfig(**common_flags.search_config_fields(), choices=choices)


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags().validate()
    except (ValueError, flags.ValidationError) as e:
        raise app.UsageError(f"bad flag value: {e}") from None
    result = Search(config, FLAGS.output_dir, verbose=FLAGS.verbose).run()
    summary = {k: result[k] for k in ("architecture", "hyperparameters", "val_accuracy",
                                      "test_accuracy", "search_seconds", "train_seconds")}
    print(json.dumps(summary, indent=2))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
