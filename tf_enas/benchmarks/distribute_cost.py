"""Shared-weight steps per second on 1 vs 2 logical devices (default vs mirrored strategy),
with and without mixed precision and XLA, measured side by side in one fresh process (the
logical devices must be configured before TensorFlow starts: `measure` runs this module).
The XLA pair runs at a smaller supernet (XLA_SIZE): on CPU the 6-layer step's compile did
not finish in 300 s, and the 2-layer one took 528 s (2 shared cores, 2026-11-27; most of it
the pooling ops' gradients inside the op switch), so `xla` adds about 10 minutes."""
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
XLA = (("default", "none", False), ("default", "none", True))
XLA_SIZE = dict(num_layers=2, width=32)


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
    settings = [(*k, size) for k in (SETTINGS[:2] if quick else SETTINGS)]
    settings += [(*k, XLA_SIZE) for k in XLA] if xla else []
    for strategy, policy, jit, at in settings:
        s = Search(SearchConfig(epochs=1, strategy=strategy, mixed_precision=policy,
                                jit_compile=jit, **at), tempfile.mkdtemp(), splits=splits,
                   verbose=0)
        start = time.perf_counter()
        s.train_step(x, y)  # trace (and compile)
        searches[(strategy, policy, jit, at["num_layers"], at["width"])] = (
            s, time.perf_counter() - start)
    repeats = 10 if quick else 50
    times = {k: [] for k in searches}
    for _ in range(3):  # interleaved rounds: every setting sees the same load
        for k, (s, _) in searches.items():
            start = time.perf_counter()
            for _ in range(repeats):
                s.train_step(x, y)["train/loss"].numpy()
            times[k].append((time.perf_counter() - start) / repeats)
    rows = [{"strategy": k[0], "mixed_precision": k[1], "jit_compile": k[2],
             "num_layers": k[3], "width": k[4], "first_step_s": searches[k][1],
             "replicas": searches[k][0].strategy.num_replicas_in_sync,
             "steps_per_s": 1.0 / float(np.median(v))} for k, v in times.items()]
    return {"rows": rows, "devices": len(tf.config.list_logical_devices("CPU")), **size}


def markdown(r: dict) -> str:
    """One row per setting; the last column compares with the first row of the same size
    (default strategy, float32, no XLA)."""
    lines = ["| layers × width | strategy (replicas) | mixed precision | XLA | first step (trace, "
             "compile) s | steps / s | vs default float32 |", "|---|---|---|---|---:|---:|---:|"]
    for row in r["rows"]:
        base = next(b for b in r["rows"] if (b["num_layers"], b["width"]) == (
            row["num_layers"], row["width"]))["steps_per_s"]
        lines.append(
            f"| {row['num_layers']} × {row['width']} | {row['strategy']} ({row['replicas']}) | "
            f"{row['mixed_precision']} | {'on' if row['jit_compile'] else 'off'} | "
            f"{row['first_step_s']:.1f} | {row['steps_per_s']:.1f} | "
            f"{row['steps_per_s'] / base:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print("RESULT " + json.dumps(_worker(sys.argv[1] == "quick", sys.argv[2] == "xla")))
