"""Joint architecture + optimizer search with response gradients (+ derive + retrain).

    python -m tf_enas.bin.joint_search --flagfile=flags/mnist1d_joint_ift.cfg \
        --output_dir=runs/joint_ift
"""
from __future__ import annotations

import json

from absl import app, flags, logging

from tf_enas.bin import common_flags
from tf_enas.joint_search import SEARCHABLE, JointConfig, JointSearch
from tf_enas.response import RESPONSES

FLAGS = flags.FLAGS
common_flags.define_data_flags()
common_flags.define_search_flags()
common_flags.define_retrain_flags()
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


def _range(name):
    values = common_flags.float_list(name, getattr(FLAGS, name))
    if len(values) != 2:
        raise flags.ValidationError(f"--{name} must be two numbers low,high, got "
                                    f"{getattr(FLAGS, name)}")
    return values


def config_from_flags() -> JointConfig:
    continuous = tuple(dict.fromkeys(FLAGS.continuous))
    return JointConfig(
        **common_flags.search_config_fields(), continuous=continuous,
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
