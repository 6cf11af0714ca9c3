"""Supernet training step for a sampled child vs the same child as a standalone Keras
model's step, and the retrace count after warm-up (DESIGN.md §3: no retracing per child).

Both sides take the same step (SharedWeights.step: the child's heavy ball on CE + λ‖W‖²,
global-norm clipping, the non-finite check) on the same batch; the static side runs it on
`child_model(child)` (fresh weights, same shapes) through StaticChild. The supernet's step
updates all its weights (every op's kernels are decayed, every velocity decays), the
static one only the child's. Each of `children` sampled children is
timed on both sides, interleaved in rounds so that both see the same machine load:

    ratio = (mean_k supernet_step(child_k) + sampling) / mean_k static_step(child_k)

with `sampling` the controller's draw of one child (Search.train_step samples inside its
own step). The supernet steps with a fresh child every step (Search.train_step) give the
retrace count and a second ratio over the same children's static mean.
"""
from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from tf_enas import distribute
from tf_enas.controller import ControllerConfig
from tf_enas.search import Search, SearchConfig
from tf_enas.shared_weights import SharedWeights, StaticChild


def _rounds(fns: dict, repeats: int, rounds: int) -> dict:
    """Median over `rounds` of the mean seconds per call of each fn, interleaved."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            times[k].append((time.perf_counter() - start) / repeats)
    return {k: float(np.median(v)) for k, v in times.items()}


def measure(output_dir: str, quick: bool = False, splits=None, children: int = 8,
            **config_fields) -> dict:
    """Ratio supernet step / standalone child step (goal ≤ 1.15) and retraces after warm-up;
    config_fields (e.g. mixed_precision, num_layers, width) go into the SearchConfig."""
    config = SearchConfig(**({"num_layers": 6, "width": 64, "batch_size": 128, "epochs": 1,
                              "controller": ControllerConfig()} | config_fields))
    search = Search(config, output_dir, splits=splits, verbose=0)
    x = tf.constant(search.splits.x_train[:config.batch_size])
    y = tf.constant(search.splits.y_train[:config.batch_size])
    search.train_step(x, y)  # warm-up trace
    traces = search.train_step.experimental_get_tracing_count()
    sampled, values = search.sample_children(children)
    shared = search.shared
    step = shared.compiled_step if config.jit_compile else shared.train_step
    fns, statics = {}, []  # statics: a tf.function method holds its object weakly
    for k in range(children):
        c, v = sampled[k], values[k]
        with distribute.dtype_policy(config.mixed_precision):
            model = search.supernet.child_model(c.numpy(), inherit_weights=False)
        static = SharedWeights(StaticChild(model), config, search.steps_per_epoch,
                               shared.objective.hyperparameters)
        statics.append(static)
        static_step = static.compiled_step if config.jit_compile else static.train_step
        fns[f"supernet {k}"] = lambda c=c, v=v: step(x, y, c, v)["train/loss"].numpy()
        fns[f"static {k}"] = lambda c=c, v=v, s=static_step: s(x, y, c, v)["train/loss"].numpy()
    sample = tf.function(lambda: search.sample_children(1)[0], autograph=False)
    fns["sampling"] = lambda: sample().numpy()
    fns["supernet, fresh child each step"] = lambda: search.train_step(x, y)[
        "train/loss"].numpy()
    for fn in fns.values():  # warm-up traces
        fn()
    repeats, rounds = (5, 3) if quick else (20, 5)
    t = _rounds(fns, repeats, rounds)
    supernet = float(np.mean([t[f"supernet {k}"] for k in range(children)]))
    static = float(np.mean([t[f"static {k}"] for k in range(children)]))
    fresh = t["supernet, fresh child each step"]
    return {"supernet_step_s": supernet, "sampling_s": t["sampling"], "child_step_s": static,
            "supernet_over_child": (supernet + t["sampling"]) / static,
            "fresh_child_step_s": fresh, "fresh_over_child": fresh / static,
            "per_child": [t[f"supernet {k}"] / t[f"static {k}"] for k in range(children)],
            "children": children,
            "retraces_after_warmup": search.train_step.experimental_get_tracing_count() - traces,
            "steps_after_warmup": repeats * rounds + 1}


def markdown(r: dict) -> str:
    per_child = ", ".join(f"{q:.2f}" for q in r["per_child"])
    return "\n".join([
        "| quantity | value |", "|---|---|",
        f"| supernet step, same child (mean of {r['children']} sampled children) | "
        f"{r['supernet_step_s'] * 1e3:.2f} ms |",
        f"| sampling one child | {r['sampling_s'] * 1e3:.2f} ms |",
        f"| standalone child step, same update rule | {r['child_step_s'] * 1e3:.2f} ms |",
        f"| ratio (supernet + sampling) / standalone (goal ≤ 1.15) | "
        f"{r['supernet_over_child']:.2f} |",
        f"| ratio per child, without sampling | {per_child} |",
        f"| supernet step with a fresh child each step (Search.train_step) / standalone | "
        f"{r['fresh_child_step_s'] * 1e3:.2f} ms / {r['fresh_over_child']:.2f} |",
        f"| retraces after warm-up ({r['steps_after_warmup']} steps, new child each) | "
        f"{r['retraces_after_warmup']} |"])
