"""absl flags shared by the binaries, and their translation into library configs.

Flags carry the names of the config fields they set, so that a config's ValueError names
the flag to fix.
"""
from __future__ import annotations

from absl import app, flags

from tf_enas import data
from tf_enas import distribute
from tf_enas import response
from tf_enas.controller import ControllerConfig
from tf_enas.decay_groups import PER as WEIGHT_DECAY_PER
from tf_enas.joint_controller import DEFAULTS
from tf_enas.retrain import OPTIMIZERS, RetrainConfig
from tf_enas.search_config import MIXED_PRECISION, REWARDS, SOLVERS, SPACES, SearchConfig
from tf_enas.space import OPS

FLAGS = flags.FLAGS


def define_data_flags():
    flags.DEFINE_enum("dataset", "mnist1d", list(data.DATASETS), "Dataset to search/train "
                      "on; npz, csv and text read your own file (--dataset_path; text: a "
                      "character-level language model, --space=rnn_cell).")
    flags.DEFINE_string("dataset_path", None,
                        "Your file for --dataset=npz (arrays x_train, y_train[, x_test, "
                        "y_test]), --dataset=csv (feature columns + a label column) or "
                        "--dataset=text (a UTF-8 text file); for "
                        "fashion_mnist/cifar10 a local .npz instead of the download.")
    flags.register_multi_flags_validator(
        ["dataset", "dataset_path"],
        lambda f: f["dataset"] not in ("npz", "csv", "text") or bool(f["dataset_path"]),
        "--dataset=npz, csv and text read your own file: pass --dataset_path=FILE")
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
    flags.DEFINE_integer("retrain_num_cells", None, "micro: normal cells per stage of the "
                         "retrained child (default: the search's --num_cells); searching "
                         "shallow and retraining deeper is NASNet's, ENAS's and DARTS's "
                         "protocol.", lower_bound=1)
    flags.DEFINE_float("retrain_drop_path", 0.0, "micro: drop-path rate of the retrained "
                       "child (NASNet's ScheduledDropPath: every op but identity, each example "
                       "dropped with a rate raised linearly from 0 to this over the epochs).",
                       lower_bound=0.0, upper_bound=0.99)
    flags.DEFINE_bool("retrain_include_val", False, "Train the found child on the training "
                      "and validation sets (the final retrain of NASNet, ENAS and DARTS "
                      "uses the whole training set); result.json's val_accuracy is then null.")


def define_search_flags():
    """The SearchConfig fields that tf-enas-search and tf-enas-joint-search share."""
    flags.DEFINE_integer("num_layers", 6, "Searched layers.", lower_bound=1)
    flags.DEFINE_enum("space", "macro", list(SPACES), "Search space: macro (layers), micro "
                      "(ENAS's conv cells) or rnn_cell (ENAS's recurrent cell).")
    flags.DEFINE_integer("num_nodes", 5, "micro / rnn_cell: nodes per cell.", lower_bound=1)
    flags.DEFINE_integer("num_cells", 1, "micro: normal cells per stage (one stage, and one "
                         "more after each reduction: 3 for images, 2 for MNIST-1D).",
                         lower_bound=1)
    flags.DEFINE_multi_enum("ops", list(OPS), list(OPS), "Ops each layer chooses from.")
    flags.DEFINE_integer("width", 64, "Channels of every supernet layer.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 128, "Shared-weight batch size.", lower_bound=1)
    flags.DEFINE_float("lr_max", 0.05, "Shared-weight peak learning rate (when the learning "
                       "rate is not searched).", lower_bound=0.0)
    flags.DEFINE_float("lr_min", 5e-4, "Shared-weight minimum learning rate (the cosine "
                       "multiplier's floor is lr_min/lr_max).", lower_bound=0.0)
    flags.DEFINE_integer("lr_restart_epochs", 10, "First cosine period (then doubling).",
                         lower_bound=1)
    flags.DEFINE_float("momentum", 0.9, "Shared-weight momentum (when not searched).",
                       lower_bound=0.0, upper_bound=0.999)
    flags.DEFINE_float("l2", 2.5e-4, "L2 on shared weights (when not searched).",
                       lower_bound=0.0)
    flags.DEFINE_float("grad_clip_norm", 5.0, "Global-norm clip of shared-weight gradients.",
                       lower_bound=1e-8)
    flags.DEFINE_integer("epochs", 100, "Maximum search epochs.", lower_bound=1)
    flags.DEFINE_float("time_budget_s", None, "Wall-clock budget of the search phase "
                       "(seconds).", lower_bound=1.0)
    flags.DEFINE_integer("controller_steps", 20, "Controller steps per epoch.", lower_bound=1)
    flags.DEFINE_integer("controller_batch", 8, "Children per controller step.", lower_bound=1)
    flags.DEFINE_integer("val_batch_size", 256, "Validation batch per reward.", lower_bound=1)
    flags.DEFINE_integer("derive_samples", 64, "Children scored on the whole validation set.",
                         lower_bound=1)
    flags.DEFINE_integer("derive_proxy_epochs", 0, "0: the derived child is the best of "
                         "--derive_samples by shared-weight validation accuracy; N > 0: by "
                         "validation accuracy after N epochs of the retrain from scratch "
                         "(costs derive_samples × N retrain epochs).", lower_bound=0)
    flags.DEFINE_integer("derive_max_params", 0, "0: no budget; N > 0: the derived child is "
                         "chosen among draws of the final policy whose retrained model has at "
                         "most N parameters (at --retrain_width, --retrain_num_cells).",
                         lower_bound=0)
    flags.DEFINE_integer("controller_lstm_size", 64, "Controller LSTM units.", lower_bound=1)
    flags.DEFINE_float("controller_lr", 1e-3, "Controller Adam learning rate.", lower_bound=0.0)
    flags.DEFINE_float("controller_temperature", 1.0, "Logit temperature.", lower_bound=1e-3)
    flags.DEFINE_float("controller_tanh_constant", 1.5, "tanh constant of the logits "
                       "(0: none).", lower_bound=0.0)
    flags.DEFINE_float("controller_entropy_weight", 1e-4, "Entropy bonus.", lower_bound=0.0)
    flags.DEFINE_float("controller_baseline_decay", 0.99, "Baseline moving-average decay.",
                       lower_bound=0.0, upper_bound=0.9999)
    flags.DEFINE_float("controller_skip_target", 0.4, "Target skip probability.",
                       lower_bound=1e-3, upper_bound=0.999)
    flags.DEFINE_float("controller_skip_weight", 0.8, "Weight of the skip KL penalty.",
                       lower_bound=0.0)
    flags.DEFINE_integer("verbose", 1, "0: quiet, 1: progress bar.", lower_bound=0,
                         upper_bound=2)
    flags.register_validator("lr_min", lambda v: v > 0, "--lr_min must be > 0")
    flags.DEFINE_bool("overwrite", False, "Delete the previous run in --output_dir and start "
                      "fresh (a rerun otherwise resumes it, and only with the same flags "
                      "except larger --epochs / --time_budget_s).")
    flags.DEFINE_list("learning_rates", [], "Grid of shared-step learning rates for the "
                      "controller to choose (empty: fixed --lr_max).")
    flags.DEFINE_list("weight_decays", [], "Grid of L2 coefficients for the controller to "
                      "choose (empty: fixed --l2).")
    flags.DEFINE_multi_enum("continuous", [], list(DEFAULTS), "Optimizer hyperparameters "
                            "the controller picks as continuous decisions.")
    for name, d in DEFAULTS.items():
        flags.DEFINE_list(f"{name}_range", [f"{d.low:g}", f"{d.high:g}"],
                          f"low,high of the continuous {name}.")
    flags.DEFINE_enum("weight_decay_per", "model", list(WEIGHT_DECAY_PER), "With "
                      "--continuous=weight_decay (macro space): one L2 coefficient for the "
                      "model, one per layer group (stem, each layer, head) or one per kernel "
                      "tensor of the supernet (decision weight_decay_<kernel path from its "
                      "layer group, / as .>), each in --weight_decay_range.")
    flags.DEFINE_enum("reward", "accuracy", list(REWARDS), "Controller reward: validation "
                      "accuracy (ENAS) or −min(L_val, cap) (needed by a response).")
    flags.DEFINE_float("reward_loss_cap", 5.0, "Rewards are −min(L_val, cap); non-finite: "
                       "−cap.", lower_bound=1e-6)
    flags.DEFINE_integer("lookahead_steps", 0, "K: steps of the child's optimizer (from the "
                         "shared weights and velocity) before its validation loss.",
                         lower_bound=0)
    flags.DEFINE_integer("lookahead_batch_size", 64, "Training batch of the lookahead steps "
                         "and of the IFT Hessian.", lower_bound=1)
    flags.DEFINE_integer("truncate", 0, "Lookahead steps not differentiated through.",
                         lower_bound=0)
    flags.DEFINE_enum("lookahead_memory", "full", ["full", "checkpointed"], "Unrolled "
                      "response: keep every lookahead step, or √K checkpoints and recompute "
                      "(memory O(√K), one more forward pass).")
    flags.DEFINE_enum("response", "none", list(response.ESTIMATORS),
                      "Response estimator added to REINFORCE.")
    flags.DEFINE_float("response_weight", 1.0, "Weight of the response term.", lower_bound=0.0)
    flags.DEFINE_integer("response_every", 1, "Compute the response on every n-th controller "
                         "step, its term weighted by n (unrolled: the continuous decisions "
                         "learn from it alone).", lower_bound=1)
    flags.DEFINE_enum("solver", "cg", list(SOLVERS), "IFT: linear solver.")
    flags.DEFINE_integer("cg_iterations", 5, "IFT: solver iterations.", lower_bound=1)
    flags.DEFINE_float("cg_tol", 1e-2, "IFT: relative residual at which a solve counts as "
                       "converged (an unconverged solve is not applied).", lower_bound=0.0)
    flags.DEFINE_float("cg_damping", 1e-2, "IFT: damping δ of (H + δI)u = ∇L_val.",
                       lower_bound=0.0)
    flags.DEFINE_float("neumann_alpha", 0.1, "IFT: step size of the Neumann series.",
                       lower_bound=1e-9)
    flags.DEFINE_enum("curvature", "hessian", list(response.CURVATURES), "IFT: the matrix "
                      "of the solve, the Hessian or the (PSD) generalized Gauss–Newton.")
    flags.DEFINE_enum("gauss_newton_jvp", "reverse", list(response.JVPS), "IFT with "
                      "--curvature=gauss_newton: how its product takes J v, by two reverse "
                      "passes (exact) or by a central difference of two forward passes (no "
                      "second-order graph: faster; about 0.3% off, BENCHMARKS.md).")
    flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES), "tf.distribute "
                      "strategy of the shared-weight step: one device, mirrored over the local "
                      "GPUs (or logical CPUs), or multi_worker (cluster from TF_CONFIG). A run "
                      "resumes under any strategy.")
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the shared-weight step (see "
                      "BENCHMARKS.md 'scaling' for where it is faster).")
    flags.DEFINE_enum("mixed_precision", "none", list(MIXED_PRECISION), "Keras dtype policy "
                      "of the supernet's layers (variables and hypergradients stay float32).")


def search_config() -> SearchConfig:
    """The SearchConfig of define_data_flags, define_search_flags and define_retrain_flags."""
    controller = ControllerConfig(
        lstm_size=FLAGS.controller_lstm_size, learning_rate=FLAGS.controller_lr,
        temperature=FLAGS.controller_temperature,
        tanh_constant=FLAGS.controller_tanh_constant or None,
        entropy_weight=FLAGS.controller_entropy_weight,
        baseline_decay=FLAGS.controller_baseline_decay,
        skip_target=FLAGS.controller_skip_target, skip_weight=FLAGS.controller_skip_weight)
    choices = {}
    if FLAGS.learning_rates:
        choices["learning_rate"] = float_list("learning_rates", FLAGS.learning_rates)
    if FLAGS.weight_decays:
        choices["weight_decay"] = float_list("weight_decays", FLAGS.weight_decays)
    continuous = tuple(dict.fromkeys(FLAGS.continuous))
    same_name = ("dataset", "dataset_path", "num_samples", "val_fraction", "seed",
                 "num_layers", "space", "num_nodes", "num_cells", "width", "batch_size",
                 "lr_max", "lr_min", "lr_restart_epochs",
                 "momentum", "l2", "grad_clip_norm", "controller_steps", "controller_batch",
                 "val_batch_size", "epochs", "time_budget_s", "derive_samples",
                 "derive_proxy_epochs", "derive_max_params", "reward",
                 "reward_loss_cap", "lookahead_steps", "lookahead_batch_size", "truncate",
                 "lookahead_memory", "weight_decay_per",
                 "response", "response_weight", "response_every", "solver", "cg_iterations",
                 "cg_tol", "cg_damping", "neumann_alpha", "curvature", "gauss_newton_jvp",
                 "strategy", "jit_compile", "mixed_precision")
    return SearchConfig(
        **{k: getattr(FLAGS, k) for k in same_name}, ops=tuple(dict.fromkeys(FLAGS.ops)),
        choices=choices, continuous=continuous,
        ranges={k: _range(f"{k}_range") for k in continuous},
        controller=controller, retrain=retrain_config())


def _range(name):
    values = float_list(name, getattr(FLAGS, name))
    if len(values) != 2:
        raise flags.ValidationError(f"--{name} must be two numbers low,high, got "
                                    f"{getattr(FLAGS, name)}")
    return values


def check_targets(splits, space: str) -> None:
    """Per-step targets (--dataset=text) need --space=rnn_cell: a clear error otherwise."""
    if splits.sequence_targets and space != "rnn_cell":
        raise app.UsageError(f"--dataset={splits.name} has a target per step (a language "
                             f"model): pass --space=rnn_cell, not --space={space}")


def retrain_config() -> RetrainConfig:
    return RetrainConfig(
        epochs=FLAGS.retrain_epochs, batch_size=FLAGS.retrain_batch_size,
        optimizer=FLAGS.retrain_optimizer, learning_rate=FLAGS.retrain_learning_rate,
        weight_decay=FLAGS.retrain_weight_decay, width=FLAGS.retrain_width,
        dropout=FLAGS.retrain_dropout, num_cells=FLAGS.retrain_num_cells,
        drop_path=FLAGS.retrain_drop_path, include_val=FLAGS.retrain_include_val).validate()


def float_list(name: str, values) -> tuple:
    """Parses a flag's list of numbers, naming the flag when one is not a number."""
    try:
        return tuple(float(v) for v in values or ())
    except ValueError:
        raise flags.ValidationError(f"--{name} must be a comma-separated list of numbers, "
                                    f"got {values}") from None
