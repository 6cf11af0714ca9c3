"""Supernet training step for a sampled child vs the same child as a standalone Keras
model's step, and the retrace count after warm-up (DESIGN.md §3: no retracing per child)."""
from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from tf_enas.controller import ControllerConfig
from tf_enas.search import Search, SearchConfig


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure(output_dir: str, quick: bool = False, splits=None, **config_fields) -> dict:
    """Ratio supernet step / standalone child step (goal ≤ 1.15) and retraces after warm-up;
    config_fields (e.g. mixed_precision) go into the SearchConfig."""
    config = SearchConfig(num_layers=6, width=64, batch_size=128, epochs=1,
                          controller=ControllerConfig(), **config_fields)
    search = Search(config, output_dir, splits=splits, verbose=0)
    x = tf.constant(search.splits.x_train[:128])
    y = tf.constant(search.splits.y_train[:128])
    search.train_step(x, y)  # warm-up trace
    traces = search.train_step.experimental_get_tracing_count()
    child = search.sample_children(1)[0][0].numpy()  # (children, values)
    model = search.supernet.child_model(child, inherit_weights=False)
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
    optimizer.build(model.trainable_variables)

    @tf.function
    def child_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        optimizer.apply(tape.gradient(loss, model.trainable_variables),
                        model.trainable_variables)
        return loss

    child_step(x, y)
    repeats = 20 if quick else 100
    supernet_s, child_s = [], []
    for _ in range(3):  # interleaved rounds, so both see the same machine load
        supernet_s.append(_median_time(lambda: search.train_step(x, y)["train/loss"].numpy(),
                                       repeats))
        child_s.append(_median_time(lambda: child_step(x, y).numpy(), repeats))
    supernet_step, child_step_s = float(np.median(supernet_s)), float(np.median(child_s))
    return {"supernet_step_s": supernet_step, "child_step_s": child_step_s,
            "supernet_over_child": supernet_step / child_step_s,
            "retraces_after_warmup": search.train_step.experimental_get_tracing_count() - traces,
            "steps_after_warmup": 6 * repeats}


def markdown(r: dict) -> str:
    return "\n".join([
        "| quantity | value |", "|---|---|",
        f"| supernet step (sampled child, incl. sampling) | {r['supernet_step_s'] * 1e3:.2f} ms |",
        f"| standalone child step | {r['child_step_s'] * 1e3:.2f} ms |",
        f"| ratio (goal ≤ 1.15) | {r['supernet_over_child']:.2f} |",
        f"| retraces after warm-up ({r['steps_after_warmup']} steps, new child each) | "
        f"{r['retraces_after_warmup']} |"])
