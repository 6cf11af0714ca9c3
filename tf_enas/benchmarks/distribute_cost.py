"""Shared-weight steps per second on 1 vs 2 logical devices (default vs mirrored strategy),
with and without mixed precision and XLA, measured side by side in one fresh process (the
logical devices must be configured before TensorFlow starts: `measure` runs this module)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

SETTINGS = (("default", "none", False), ("mirrored", "none", False),
            ("default", "mixed_bfloat16", False), ("mirrored", "mixed_bfloat16", False),
            ("default", "mixed_float16", False))
XLA = (("default", "none", True),)  # XLA on CPU: the step's compile ran > 300 s (2 cores)


def measure(quick: bool = False, xla: bool = False, timeout_s: float = 1800) -> dict:
    """{"rows": [{strategy, mixed_precision, jit_compile, steps_per_s}], "devices": 2}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "tf_enas.benchmarks.distribute_cost",
           "quick" if quick else "full", "xla" if xla else "noxla"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"distribute_cost failed: {out.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _worker(quick: bool, xla: bool) -> dict:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    if not tf.config.list_physical_devices("GPU"):
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np

    from tf_enas.data import load
    from tf_enas.search import Search, SearchConfig

    splits = load("mnist1d", seed=0)
    x, y = tf.constant(splits.x_train[:128]), tf.constant(splits.y_train[:128])
    searches = {}
    size = dict(num_layers=2, width=16) if quick else dict(num_layers=6, width=64)
    settings = (SETTINGS[:2] if quick else SETTINGS) + (XLA if xla else ())
    for strategy, policy, jit in settings:
        s = Search(SearchConfig(epochs=1, strategy=strategy, mixed_precision=policy,
                                jit_compile=jit, **size), tempfile.mkdtemp(), splits=splits,
                   verbose=0)
        s.train_step(x, y)  # trace
        searches[(strategy, policy, jit)] = s
    repeats = 10 if quick else 50
    times = {k: [] for k in searches}
    for _ in range(3):  # interleaved rounds: every setting sees the same load
        for k, s in searches.items():
            start = time.perf_counter()
            for _ in range(repeats):
                s.train_step(x, y)["train/loss"].numpy()
            times[k].append((time.perf_counter() - start) / repeats)
    rows = [{"strategy": k[0], "mixed_precision": k[1], "jit_compile": k[2],
             "replicas": searches[k].strategy.num_replicas_in_sync,
             "steps_per_s": 1.0 / float(np.median(v))} for k, v in times.items()]
    return {"rows": rows, "devices": len(tf.config.list_logical_devices("CPU")), **size}


def markdown(r: dict) -> str:
    base = r["rows"][0]["steps_per_s"]
    lines = ["| strategy (replicas) | mixed precision | XLA | steps / s | vs default float32 |",
             "|---|---|---|---:|---:|"]
    lines += [f"| {row['strategy']} ({row['replicas']}) | {row['mixed_precision']} | "
              f"{'on' if row['jit_compile'] else 'off'} | {row['steps_per_s']:.1f} | "
              f"{row['steps_per_s'] / base:.2f} |" for row in r["rows"]]
    return "\n".join(lines)


if __name__ == "__main__":
    print("RESULT " + json.dumps(_worker(sys.argv[1] == "quick", sys.argv[2] == "xla")))
