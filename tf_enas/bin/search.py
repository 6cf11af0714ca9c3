"""tf-enas-search: a search (+ derive + retrain) from flags — ENAS, or a joint
architecture + optimizer search with a response estimator.

    tf-enas-search --flagfile=flags/mnist1d_enas.cfg --output_dir=runs/enas
    tf-enas-search --flagfile=flags/mnist1d_joint_unrolled.cfg --output_dir=runs/unrolled
    tf-enas-search --dataset=npz --dataset_path=mine.npz --output_dir=runs/mine

Writes result.json, model.keras and the pictures of tf_enas.plots (controller.png,
policy.png, architecture.png, continuous.png, children.png) into --output_dir.
"""
from __future__ import annotations

import json
import sys

from absl import app, flags, logging

from tf_enas import data, distribute, plots
from tf_enas.bin import common_flags
from tf_enas.checkpoints import NoReadableCheckpoint
from tf_enas.run_dir import ConfigMismatch, RunDirectoryBusy
from tf_enas.search import COLLECTIVE_TIMEOUT_S, Search

FLAGS = flags.FLAGS
common_flags.define_data_flags()
common_flags.define_search_flags()
common_flags.define_retrain_flags()
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


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = common_flags.search_config().validate()
    except (ValueError, flags.ValidationError) as e:
        raise app.UsageError(f"bad flag value: {e}") from None
    try:  # first, before other TensorFlow ops (a multi-worker strategy needs that)
        strategy = distribute.strategy(config.strategy, timeout_s=COLLECTIVE_TIMEOUT_S)
    except ValueError as e:
        raise app.UsageError(f"--strategy={config.strategy}: {e}") from None
    if config.batch_size % strategy.num_replicas_in_sync:
        raise app.UsageError(f"--batch_size={config.batch_size} must be a multiple of the "
                             f"{strategy.num_replicas_in_sync} replicas of "
                             f"--strategy={config.strategy}")
    try:  # your own file's problems are usage errors naming the file, not tracebacks
        splits = data.load(config.dataset, config.seed, config.val_fraction,
                           path=config.dataset_path, num_samples=config.num_samples)
    except (ValueError, OSError) as e:
        raise app.UsageError(f"--dataset={config.dataset}: {e}") from None
    common_flags.check_targets(splits, config.space)
    try:
        result = Search(config, FLAGS.output_dir, splits=splits, verbose=FLAGS.verbose,
                        overwrite=FLAGS.overwrite).run()
    except (ConfigMismatch, RunDirectoryBusy, NoReadableCheckpoint) as e:
        sys.exit(f"error: {e}")
    if not result:  # a multi-worker run's other worker: the chief reports
        print(f"worker {distribute.worker_index(strategy)}: search done; the chief derives, "
              f"retrains and writes {FLAGS.output_dir}")
        return
    summary = {k: result[k] for k in (
        "architecture", "hyperparameters", "optimizer_hyperparameters", "val_accuracy",
        "test_accuracy", "search_seconds", "train_seconds", "response")}
    pictures = plots.write_all(result, FLAGS.output_dir)
    print(json.dumps(summary | {"pictures": pictures}, indent=2))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
