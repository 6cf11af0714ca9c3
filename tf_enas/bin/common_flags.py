"""absl flags shared by the binaries, and their translation into library configs.

Flags carry the names of the config fields they set, so that a config's ValueError names
the flag to fix.
"""
from __future__ import annotations

from absl import flags

from tf_enas import data
from tf_enas.retrain import OPTIMIZERS, RetrainConfig

FLAGS = flags.FLAGS


def define_data_flags():
    flags.DEFINE_enum("dataset", "mnist1d", list(data.DATASETS), "Dataset to search/train on.")
    flags.DEFINE_string("dataset_path", None,
                        "Local .npz for fashion_mnist/cifar10 instead of the download.")
    flags.DEFINE_integer("num_samples", None, "mnist1d: number of generated samples.",
                         lower_bound=100)
    flags.DEFINE_float("val_fraction", 0.1, "Fraction of the training set held out for "
                       "validation.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("seed", 0, "One seed for data split, init, sampling and batches.",
                         lower_bound=0)
    flags.DEFINE_string("output_dir", None, "Directory for result.json, model.keras, "
                        "checkpoints and TensorBoard logs (resumes if it holds a run).")
    flags.mark_flag_as_required("output_dir")


def define_retrain_flags():
    flags.DEFINE_integer("retrain_epochs", 60, "Epochs to train the found child from scratch.",
                         lower_bound=1)
    flags.DEFINE_integer("retrain_batch_size", 128, "Retrain batch size.", lower_bound=1)
    flags.DEFINE_enum("retrain_optimizer", "adamw", list(OPTIMIZERS), "Retrain optimizer.")
    flags.DEFINE_float("retrain_learning_rate", 3e-3, "Retrain peak learning rate (cosine "
                       "decay); a searched learning_rate choice overrides it.", lower_bound=0.0)
    flags.DEFINE_float("retrain_weight_decay", 5e-2, "Retrain decoupled weight decay; a "
                       "searched weight_decay choice overrides it.", lower_bound=0.0)
    flags.DEFINE_integer("retrain_width", None, "Retrain width (default: search width).",
                         lower_bound=1)
    flags.DEFINE_float("retrain_dropout", 0.0, "Retrain head dropout.", lower_bound=0.0,
                       upper_bound=0.99)


def retrain_config() -> RetrainConfig:
    return RetrainConfig(
        epochs=FLAGS.retrain_epochs, batch_size=FLAGS.retrain_batch_size,
        optimizer=FLAGS.retrain_optimizer, learning_rate=FLAGS.retrain_learning_rate,
        weight_decay=FLAGS.retrain_weight_decay, width=FLAGS.retrain_width,
        dropout=FLAGS.retrain_dropout).validate()


def float_list(name: str, values) -> tuple:
    """Parses a flag's list of numbers, naming the flag when one is not a number."""
    try:
        return tuple(float(v) for v in values or ())
    except ValueError:
        raise flags.ValidationError(f"--{name} must be a comma-separated list of numbers, "
                                    f"got {values}") from None
