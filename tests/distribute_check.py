"""Run as `python -m tests.distribute_check` (a fresh process: the 2 logical CPU devices
must be configured before TensorFlow initializes its devices). Prints JSON: for a plain and
a joint (unrolled response) search, the largest difference between a mirrored search's
state and the single-device search's after the same steps on the same global batches, and
the checks of tests/test_distribute.py."""
import json
import os
import tempfile

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from tests.test_search import JOINT, tiny  # noqa: E402
from tf_enas import checkpoints  # noqa: E402
from tf_enas.data import load  # noqa: E402
from tf_enas.search import Search  # noqa: E402

OPS = ("conv3", "avgpool3", "maxpool3")  # a convolution and both post-BN poolings


def _state(search):
    """Weights and BN statistics, velocity, controller: numpy arrays by group."""
    return {"supernet": [v.numpy() for v in search.supernet.variables],
            "velocity": [v.numpy() for v in search.shared.velocity],
            "controller": [v.numpy() for v in search.controller.variables]}


def _max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))



def _steps(search, splits):
    """train, controller (with the configured response), train; returns the logs."""
    x, y = tf.constant(splits.x_train[:32]), tf.constant(splits.y_train[:32])
    x2, y2 = tf.constant(splits.x_train[32:64]), tf.constant(splits.y_train[32:64])
    logs = [search.train_step(x, y),
            search.controller_step(tf.constant(splits.x_val[:32]),
                                   tf.constant(splits.y_val[:32])),
            search.train_step(x2, y2)]
    return [{k: float(v) for k, v in log.items() if np.ndim(v) == 0} for log in logs]


def main():
    splits = load("mnist1d", seed=0, num_samples=600)
    out = {"devices": len(tf.config.list_logical_devices("CPU"))}
    work = tempfile.mkdtemp(prefix="tf_enas_distribute_check_")
    for kind, extra in (("plain", {}), ("joint", JOINT)):
        states, logs = {}, {}
        for strategy in ("default", "mirrored"):
            s = Search(tiny(ops=OPS, num_layers=2, strategy=strategy, **extra),
                       os.path.join(work, kind, strategy), splits=splits, verbose=0)
            initial = _state(s)
            logs[strategy] = _steps(s, splits)
            states[strategy] = (initial, _state(s))
            if strategy == "mirrored":
                s.checkpoints.save(1)
            s.close()
            out[f"{kind}/{strategy}/replicas"] = s.strategy.num_replicas_in_sync
        (init_d, final_d), (init_m, final_m) = states["default"], states["mirrored"]
        for group in final_d:
            out[f"{kind}/{group}/moved"] = _max_diff(final_d[group], init_d[group])
            out[f"{kind}/{group}/initial_diff"] = _max_diff(init_d[group], init_m[group])
            out[f"{kind}/{group}/diff"] = _max_diff(final_d[group], final_m[group])
            out[f"{kind}/{group}/scale"] = max(float(np.max(np.abs(a))) for a in final_d[group])
        out[f"{kind}/log_diff"] = max(abs(a[k] - b[k]) for a, b in zip(
            logs["default"], logs["mirrored"]) for k in a)
        # the mirrored run's checkpoint, restored under the default strategy, and back
        s = Search(tiny(ops=OPS, num_layers=2, **extra), os.path.join(work, kind, "mirrored"),
                   splits=splits, verbose=0)
        checkpoints.restore_readable(s.checkpoint, s.manager, assert_consumed=True)
        restored = _state(s)
        out[f"{kind}/restored_diff"] = max(_max_diff(restored[g], final_m[g]) for g in restored)
        s.close()
    try:
        Search(tiny(ops=OPS, num_layers=2, strategy="mirrored", batch_size=33),
               os.path.join(work, "odd"),
               splits=splits, verbose=0)
        out["odd_batch_error"] = None
    except ValueError as e:
        out["odd_batch_error"] = str(e)
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
