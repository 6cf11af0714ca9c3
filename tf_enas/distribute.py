"""tf.distribute for the search: `--strategy={default,mirrored,multi_worker}`.

One sampled child per global step: the child is sampled once (in the cross-replica
context, by the one controller) and broadcast from the first replica, every replica takes
its slice of the global batch, batch-norm moments and gradients are all-reduced, and every
replica applies the same update to its copy of the shared weights. So a step under any
strategy is the single-device step on the global batch (up to float summation order;
tests/test_distribute.py checks 1e-5).

* default: TensorFlow's default strategy (one device, no collectives).
* mirrored: `tf.distribute.MirroredStrategy` over the local GPUs, or over the logical CPU
  devices when there is no GPU and more than one CPU device is configured.
* multi_worker: `tf.distribute.MultiWorkerMirroredStrategy`; the cluster comes from the
  TF_CONFIG environment variable. Create it before any other TensorFlow op runs (the
  binaries do: `strategy()` first thing).

The controller lives outside the strategy (plain variables): in one process there is one
controller; in a multi-worker run every worker has its own, seeded identically and fed the
same rewards (same weights, same seeded batches), and the broadcast of the sampled child
keeps the shared-weight step one child per global step even if they drifted. The controller
phase (and every response estimator: HVPs, CG, unrolled steps) runs whole on each worker,
in the cross-replica context, on the first replica's copy of the weights.

Checkpoints: mirrored variables save as one tensor each, so a checkpoint written under any
strategy restores under any other. In a multi-worker run the chief writes into the output
dir; the other workers restore from it and write their copies into a temporary directory
(TensorFlow's documented pattern), deleted when the search closes.

No all-reduce may sit inside control flow (a `tf.switch_case` branch) or a nested
tf.function: the macro supernet keeps its batch-norm moments outside the op switch
(supernet/macro.py), and the replicas run `SharedWeights.step` inside the caller's
tf.function. The micro and recurrent-cell supernets do not, so they run under the
default strategy only.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")
_STRATEGIES = {}  # one per name and process (a MultiWorkerMirroredStrategy must be unique)


def strategy(name: str = "default", timeout_s: float | None = None) -> tf.distribute.Strategy:
    """The strategy called `name` (created once per process; later calls return it).

    timeout_s: multi_worker only, the collective ops' timeout, so that a worker whose peer
    died fails instead of waiting forever.
    Raises ValueError naming the strategy (or TF_CONFIG) when it cannot be made.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if name in _STRATEGIES:
        return _STRATEGIES[name]
    if name == "default":
        made = tf.distribute.get_strategy()
    elif name == "mirrored":
        devices = ([d.name for d in tf.config.list_logical_devices("GPU")]
                   or [d.name for d in tf.config.list_logical_devices("CPU")])
        made = tf.distribute.MirroredStrategy(devices)
    else:
        _check_tf_config()
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)
        made = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    _STRATEGIES[name] = made
    return made


def _check_tf_config():
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError("strategy=multi_worker reads the cluster from the TF_CONFIG "
                         "environment variable, which is not set (see docs/distribute.md)")
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        if task["type"] not in ("worker", "chief") or not 0 <= int(task["index"]) < len(
                config["cluster"][task["type"]]):
            raise ValueError(f"task {task} is not in the cluster")
        if not workers:
            raise ValueError("no workers")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"TF_CONFIG must be JSON with cluster.worker (a list of host:port) "
                         f"and task (type, index): {e}") from None


def num_replicas(strat: tf.distribute.Strategy) -> int:
    return strat.num_replicas_in_sync


def _multi_worker(strat) -> bool:
    resolver = getattr(strat, "cluster_resolver", None)
    return resolver is not None and sum(
        len(v) for v in resolver.cluster_spec().as_dict().values()) > 1


def is_chief(strat: tf.distribute.Strategy) -> bool:
    """True for the process that writes the output dir (every process but the non-chief
    workers of a multi-worker run)."""
    if not _multi_worker(strat):
        return True
    resolver = strat.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def worker_index(strat: tf.distribute.Strategy) -> int:
    resolver = getattr(strat, "cluster_resolver", None)
    return int(resolver.task_id or 0) if resolver is not None else 0


@contextlib.contextmanager
def dtype_policy(name: str | None):
    """Layers built inside use Keras's dtype policy `name` ("mixed_float16",
    "mixed_bfloat16"; None or "none": unchanged); the global policy is restored after."""
    if name in (None, "none"):
        yield
        return
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


# --- inside a replica -------------------------------------------------------------------
def _context():
    """The replica context when there is more than one replica, else None."""
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def replica_mean(tensors):
    """The mean over replicas of `tensors` (a structure); themselves with one replica or
    in the cross-replica context. Differentiable (the gradient of an all-mean is an
    all-mean)."""
    ctx = _context()
    return tensors if ctx is None else ctx.all_reduce(tf.distribute.ReduceOp.MEAN, tensors)


def global_mean(x, axes):
    """tf.reduce_mean(x, axes) over the global batch (equal slices per replica)."""
    return replica_mean(tf.reduce_mean(x, axes))


def from_first_replica(tensors):
    """The first replica's value of each tensor, on every replica (a broadcast by sum)."""
    ctx = _context()
    if ctx is None:
        return tensors
    first = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), tf.float32)
    flat = tf.nest.flatten(tensors)
    summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                            [tf.cast(t, tf.float32) * first for t in flat])
    return tf.nest.pack_sequence_as(tensors, [tf.cast(s, t.dtype) for s, t in zip(summed, flat)])


def local_slice(x):
    """This replica's slice of a global batch x (rows id·n … (id+1)·n − 1, n = B / replicas)."""
    ctx = _context()
    if ctx is None:
        return x
    n = tf.shape(x)[0] // ctx.num_replicas_in_sync
    start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * n
    return x[start:start + n]


# --- from the cross-replica context -----------------------------------------------------
def run(strat: tf.distribute.Strategy, fn, args=()):
    """strat.run(fn, args), returning the first replica's results (the callers all-reduce
    what they return, so every replica's are the same)."""
    out = strat.run(fn, args=args)
    return tf.nest.map_structure(lambda v: strat.experimental_local_results(v)[0], out)


def any_worker(strat: tf.distribute.Strategy, flag: bool) -> bool:
    """True when `flag` is true on any worker (a collective in a multi-worker run; `flag`
    itself otherwise): for decisions every worker must take together, like stopping."""
    if not _multi_worker(strat):
        return flag
    return bool(_sum_over_replicas(strat)(tf.constant(float(flag))).numpy() > 0)


@functools.lru_cache(maxsize=None)
def _sum_over_replicas(strat):
    return tf.function(lambda v: strat.reduce(
        tf.distribute.ReduceOp.SUM, strat.run(tf.identity, args=(v,)), axis=None))


class CheckpointWriter:
    """Where a worker restores from and writes to: the chief both in `directory`; another
    worker restores from `directory` and writes into a temporary directory."""

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str,
                 strat: tf.distribute.Strategy, max_to_keep: int = 2):
        self.restore_manager = tf.train.CheckpointManager(checkpoint, directory,
                                                          max_to_keep=max_to_keep)
        self.scratch = None
        if is_chief(strat):
            self.save_manager = self.restore_manager
        else:
            self.scratch = tempfile.mkdtemp(prefix=f"tf_enas_worker{worker_index(strat)}_")
            self.save_manager = tf.train.CheckpointManager(checkpoint, self.scratch,
                                                           max_to_keep=1)

    def save(self, number: int):
        self.save_manager.save(checkpoint_number=number)

    def close(self):
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
