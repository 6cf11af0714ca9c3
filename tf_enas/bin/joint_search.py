"""Joint architecture + optimizer search with response gradients (+ derive + retrain).

    python -m tf_enas.bin.joint_search --flagfile=flags/mnist1d_joint_ift.cfg \
        --output_dir=runs/joint_ift
"""
from __future__ import annotations

import json

from absl import app, flags, logging

from tf_enas.bin import common_flags
from tf_enas.controller import ControllerConfig
from tf_enas.joint_search import SEARCHABLE, JointConfig, JointSearch
from tf_enas.response import RESPONSES
from tf_enas.space import OPS

FLAGS = flags.FLAGS
common_flags.define_data_flags()
common_flags.define_retrain_flags()
# the search (same names and meaning as tf-enas-search)
flags.DEFINE_integer("num_layers", 6, "Searched layers.", lower_bound=1)
flags.DEFINE_multi_enum("ops", list(OPS), list(OPS), "Ops each layer chooses from.")
flags.DEFINE_integer("width", 64, "Channels of every supernet layer.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Shared-weight batch size.", lower_bound=1)
flags.DEFINE_float("lr_max", 0.05, "Shared-weight learning rate when learning_rate is not "
                   "searched.", lower_bound=0.0)
flags.DEFINE_float("lr_min", 5e-4, "With lr_max: the cosine multiplier's floor is "
                   "lr_min/lr_max.", lower_bound=0.0)
flags.DEFINE_integer("lr_restart_epochs", 10, "First cosine period (then doubling).",
                     lower_bound=1)
flags.DEFINE_float("momentum", 0.9, "Momentum when not searched.", lower_bound=0.0,
                   upper_bound=0.999)
flags.DEFINE_float("l2", 2.5e-4, "L2 coefficient when weight_decay is not searched.",
                   lower_bound=0.0)
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
# the joint search
flags.DEFINE_multi_enum("continuous", list(SEARCHABLE), list(SEARCHABLE),
                        "Optimizer hyperparameters the controller picks (continuous).")
flags.DEFINE_list("learning_rate_range", ["0.001", "0.3"], "low,high of the learning rate.")
flags.DEFINE_list("momentum_range", ["0.5", "0.98"], "low,high of the momentum.")
flags.DEFINE_list("weight_decay_range", ["1e-6", "1e-2"], "low,high of the L2 coefficient.")
flags.DEFINE_enum("response", "none", list(RESPONSES), "Response-gradient estimator.")
flags.DEFINE_float("response_weight", 1.0, "Weight of the response term.", lower_bound=0.0)
flags.DEFINE_integer("response_every", 1, "Compute the response on every n-th controller "
                     "step.", lower_bound=1)
flags.DEFINE_integer("lookahead_steps", 1, "K: steps of the child's optimizer before its "
                     "validation loss (0: ENAS's reward).", lower_bound=0)
flags.DEFINE_integer("lookahead_batch_size", 64, "Training batch of the lookahead steps.",
                     lower_bound=1)
flags.DEFINE_integer("cg_iterations", 5, "IFT: conjugate-gradient iterations.", lower_bound=1)
flags.DEFINE_float("cg_damping", 1e-2, "IFT: damping δ of (H + δI)u = ∇L_val.",
                   lower_bound=0.0)
flags.DEFINE_integer("ift_batch_size", 128, "IFT: training batch of the HVPs.", lower_bound=1)
flags.DEFINE_float("reward_loss_cap", 5.0, "Rewards are −min(L_val, cap); non-finite: −cap.",
                   lower_bound=1e-6)
flags.register_validator("lr_min", lambda v: v > 0, "--lr_min must be > 0")


def _range(name):
    values = common_flags.float_list(name, getattr(FLAGS, name))
    if len(values) != 2:
        raise flags.ValidationError(f"--{name} must be two numbers low,high, got "
                                    f"{getattr(FLAGS, name)}")
    return values


def config_from_flags() -> JointConfig:
    continuous = tuple(dict.fromkeys(FLAGS.continuous))
    controller = ControllerConfig(
        lstm_size=FLAGS.controller_lstm_size, learning_rate=FLAGS.controller_lr,
        temperature=FLAGS.controller_temperature,
        tanh_constant=FLAGS.controller_tanh_constant or None,
        entropy_weight=FLAGS.controller_entropy_weight,
        baseline_decay=FLAGS.controller_baseline_decay,
        skip_target=FLAGS.controller_skip_target, skip_weight=FLAGS.controller_skip_weight)
    return JointConfig(
        dataset=FLAGS.dataset, dataset_path=FLAGS.dataset_path, num_samples=FLAGS.num_samples,
        val_fraction=FLAGS.val_fraction, seed=FLAGS.seed, num_layers=FLAGS.num_layers,
        ops=tuple(dict.fromkeys(FLAGS.ops)), width=FLAGS.width,
        batch_size=FLAGS.batch_size, lr_max=FLAGS.lr_max, lr_min=FLAGS.lr_min,
        lr_restart_epochs=FLAGS.lr_restart_epochs, momentum=FLAGS.momentum, l2=FLAGS.l2,
        grad_clip_norm=FLAGS.grad_clip_norm, controller=controller,
        controller_steps=FLAGS.controller_steps, controller_batch=FLAGS.controller_batch,
        val_batch_size=FLAGS.val_batch_size, epochs=FLAGS.epochs,
        time_budget_s=FLAGS.time_budget_s, derive_samples=FLAGS.derive_samples,
        retrain=common_flags.retrain_config(), continuous=continuous,
        ranges={k: _range(f"{k}_range") for k in continuous},
        response=FLAGS.response, response_weight=FLAGS.response_weight,
        response_every=FLAGS.response_every, lookahead_steps=FLAGS.lookahead_steps,
        lookahead_batch_size=FLAGS.lookahead_batch_size, cg_iterations=FLAGS.cg_iterations,
        cg_damping=FLAGS.cg_damping, ift_batch_size=FLAGS.ift_batch_size,
        reward_loss_cap=FLAGS.reward_loss_cap)


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags().validate()
    except (ValueError, flags.ValidationError) as e:
        raise app.UsageError(f"bad flag value: {e}") from None
    result = JointSearch(config, FLAGS.output_dir, verbose=FLAGS.verbose).run()
    summary = {k: result[k] for k in ("architecture", "optimizer_hyperparameters",
                                      "val_accuracy", "test_accuracy", "search_seconds",
                                      "train_seconds", "response")}
    print(json.dumps(summary, indent=2))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
