"""tf-enas-search: ENAS search (+ derive + retrain) from flags.

    tf-enas-search --flagfile=flags/mnist1d_enas.cfg --output_dir=runs/enas
"""
from __future__ import annotations

import json

from absl import app, flags, logging

from tf_enas.bin import common_flags
from tf_enas.controller import ControllerConfig
from tf_enas.search import Search, SearchConfig
from tf_enas.space import OPS

FLAGS = flags.FLAGS
common_flags.define_data_flags()
common_flags.define_retrain_flags()
flags.DEFINE_integer("num_layers", 6, "Searched layers.", lower_bound=1)
flags.DEFINE_multi_enum("ops", list(OPS), list(OPS), "Ops each layer chooses from.")
flags.DEFINE_list("learning_rates", [], "Grid of shared-step learning rates for the "
                  "controller to choose (empty: fixed --lr_max).")
flags.DEFINE_list("weight_decays", [], "Grid of L2 coefficients for the controller to choose "
                  "(empty: fixed --l2).")
flags.DEFINE_integer("width", 64, "Channels of every supernet layer.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Shared-weight batch size.", lower_bound=1)
flags.DEFINE_float("lr_max", 0.05, "Shared-weight peak learning rate.", lower_bound=0.0)
flags.DEFINE_float("lr_min", 5e-4, "Shared-weight minimum learning rate.", lower_bound=0.0)
flags.DEFINE_integer("lr_restart_epochs", 10, "First cosine period (then doubling).",
                     lower_bound=1)
flags.DEFINE_float("momentum", 0.9, "Nesterov momentum.", lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_float("l2", 2.5e-4, "L2 on shared weights.", lower_bound=0.0)
flags.DEFINE_float("grad_clip_norm", 5.0, "Global-norm clip of shared-weight gradients.",
                   lower_bound=1e-8)
flags.DEFINE_integer("epochs", 100, "Maximum search epochs.", lower_bound=1)
flags.DEFINE_float("time_budget_s", None, "Wall-clock budget of the search phase (seconds).",
                   lower_bound=1.0)
flags.DEFINE_integer("controller_steps", 20, "Controller steps per epoch.", lower_bound=1)
flags.DEFINE_integer("controller_batch", 8, "Children per controller step.", lower_bound=1)
flags.DEFINE_integer("val_batch_size", 256, "Validation batch per reward.", lower_bound=1)
flags.DEFINE_integer("derive_samples", 64, "Children scored on the whole validation set.",
                     lower_bound=1)
flags.DEFINE_integer("controller_lstm_size", 64, "Controller LSTM units.", lower_bound=1)
flags.DEFINE_float("controller_lr", 1e-3, "Controller Adam learning rate.", lower_bound=0.0)
flags.DEFINE_float("controller_temperature", 1.0, "Logit temperature.", lower_bound=1e-3)
flags.DEFINE_float("controller_tanh_constant", 1.5, "tanh constant of the logits (0: none).",
                   lower_bound=0.0)
flags.DEFINE_float("controller_entropy_weight", 1e-4, "Entropy bonus.", lower_bound=0.0)
flags.DEFINE_float("controller_baseline_decay", 0.99, "Baseline moving-average decay.",
                   lower_bound=0.0, upper_bound=0.9999)
flags.DEFINE_float("controller_skip_target", 0.4, "Target skip probability.",
                   lower_bound=1e-3, upper_bound=0.999)
flags.DEFINE_float("controller_skip_weight", 0.8, "Weight of the skip KL penalty.",
                   lower_bound=0.0)
flags.DEFINE_integer("verbose", 1, "0: quiet, 1: progress bar.", lower_bound=0, upper_bound=2)
flags.register_validator("lr_min", lambda v: v > 0, "--lr_min must be > 0")
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
    controller = ControllerConfig(
        lstm_size=FLAGS.controller_lstm_size, learning_rate=FLAGS.controller_lr,
        temperature=FLAGS.controller_temperature,
        tanh_constant=FLAGS.controller_tanh_constant or None,
        entropy_weight=FLAGS.controller_entropy_weight,
        baseline_decay=FLAGS.controller_baseline_decay,
        skip_target=FLAGS.controller_skip_target, skip_weight=FLAGS.controller_skip_weight)
    return SearchConfig(
        dataset=FLAGS.dataset, dataset_path=FLAGS.dataset_path, num_samples=FLAGS.num_samples,
        val_fraction=FLAGS.val_fraction, seed=FLAGS.seed, num_layers=FLAGS.num_layers,
        ops=tuple(dict.fromkeys(FLAGS.ops)), choices=choices, width=FLAGS.width,
        batch_size=FLAGS.batch_size, lr_max=FLAGS.lr_max, lr_min=FLAGS.lr_min,
        lr_restart_epochs=FLAGS.lr_restart_epochs, momentum=FLAGS.momentum, l2=FLAGS.l2,
        grad_clip_norm=FLAGS.grad_clip_norm, controller=controller,
        controller_steps=FLAGS.controller_steps, controller_batch=FLAGS.controller_batch,
        val_batch_size=FLAGS.val_batch_size, epochs=FLAGS.epochs,
        time_budget_s=FLAGS.time_budget_s, derive_samples=FLAGS.derive_samples,
        retrain=common_flags.retrain_config())


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags().validate()
    except ValueError as e:
        raise app.UsageError(f"bad flag value: {e}") from None
    result = Search(config, FLAGS.output_dir, verbose=FLAGS.verbose).run()
    summary = {k: result[k] for k in ("architecture", "hyperparameters", "val_accuracy",
                                      "test_accuracy", "search_seconds", "train_seconds")}
    print(json.dumps(summary, indent=2))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
