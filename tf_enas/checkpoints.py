"""Checkpoints that survive damage, and per-epoch checkpoints of a Keras fit.

`restore_readable` restores the newest checkpoint of a `tf.train.CheckpointManager` that
reads back; a damaged one (cut short by a full disk or a kill during a copy) is reported
and the one before it used. `EpochCheckpoint` checkpoints a `model.fit` after every
epoch, so that a killed retrain resumes after its last finished epoch with the same
weights, optimizer state and dropout RNG state as an uninterrupted fit.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import shutil

import keras
import tensorflow as tf

from tf_enas import files

log = logging.getLogger(__name__)

# What TensorFlow raises for a checkpoint whose files are cut short, overwritten or missing:
# IndexError("Read less bytes than requested"), DataLossError, OutOfRangeError,
# NotFoundError, or a plain OpError ("not an sstable", "checksum does not match").
DAMAGE_ERRORS = (tf.errors.OpError, IndexError)


class NoReadableCheckpoint(RuntimeError):
    """Every checkpoint the manager lists is damaged."""


def check_readable(prefix: str) -> None:
    """Reads every tensor of checkpoint `prefix` back (the reader checks sizes and
    checksums); raises OSError naming the damaged file and TensorFlow's reason."""
    try:
        reader = tf.train.load_checkpoint(prefix)
    except DAMAGE_ERRORS as e:
        raise OSError(f"{prefix}.index: {_reason(e)}") from e
    try:
        for name in reader.get_variable_to_dtype_map():
            reader.get_tensor(name)
    except DAMAGE_ERRORS as e:
        data = sorted(glob.glob(f"{glob.escape(prefix)}.data-*")) or [f"{prefix}.data-*"]
        raise OSError(f"{', '.join(data)}: {_reason(e)}") from e


def _reason(e: Exception) -> str:
    return (getattr(e, "message", None) or str(e)).strip().splitlines()[0]


def restore_readable(checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager,
                     assert_consumed: bool = False) -> str | None:
    """Restores the newest of `manager.checkpoints` that reads back; warns for each damaged
    one (naming its file) and falls back to the one before.

    Call it after every object in `checkpoint` has built its variables. A checkpoint that
    reads back but does not fit `checkpoint` (another shape) raises TensorFlow's error:
    that is another configuration, not damage.

    Returns:
      the restored checkpoint's prefix, or None when the manager has no checkpoint.
    Raises:
      NoReadableCheckpoint: when every checkpoint is damaged.
    """
    candidates = list(reversed(manager.checkpoints))
    damaged = []
    for i, prefix in enumerate(candidates):
        try:
            check_readable(prefix)
        except OSError as e:
            damaged.append(str(e))
            following = (f"restoring the previous one, {candidates[i + 1]}"
                         if i + 1 < len(candidates) else "no older checkpoint is left")
            log.warning("checkpoint %s is damaged and was skipped (%s); %s",
                        prefix, e, following)
            continue
        status = checkpoint.restore(prefix)
        if assert_consumed:
            status.assert_consumed()
        return prefix
    if damaged:
        raise NoReadableCheckpoint(
            f"no checkpoint in {manager.directory} reads back:\n  " + "\n  ".join(damaged)
            + "\nTo start fresh, pass --overwrite or choose a new --output_dir.")
    return None


class EpochCheckpoint(keras.callbacks.Callback):
    """Checkpoints a `model.fit` into `directory` after every epoch; a fit started again
    with the same callback resumes after the last finished epoch.

    The checkpoint holds the model's weights, its optimizer (so a learning-rate schedule
    continues from its step), its RNG states (dropout) and the epoch. Damaged latest
    checkpoints fall back to the previous one (`restore_readable`). `stamp` identifies
    what is being trained (e.g. the child and the retrain config): checkpoints written
    under another stamp are deleted, never resumed. The model must be compiled and
    built before `fit`, after `keras.utils.set_random_seed` as in the first run. The data
    order must be the same in a resumed fit: true for arrays in Keras 3.15, whose seeded
    shuffle draws the same permutation in every epoch (tests/test_checkpoints.py checks
    the resumed weights bit for bit, so a Keras that changes this fails there).

    After `fit`, `resumed_from` is the epoch it resumed after (0 for a fresh start).
    """

    STAMP_FILE = "stamp.json"

    def __init__(self, directory: str, stamp: dict | None = None, max_to_keep: int = 2,
                 delete_on_end: bool = False):
        super().__init__()
        self.directory = os.fspath(directory)
        self.stamp = json.loads(json.dumps(stamp if stamp is not None else {}))
        self.max_to_keep = max_to_keep
        self.delete_on_end = delete_on_end
        self.resumed_from = 0
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self._manager = None

    def _read_stamp(self):
        try:
            with open(os.path.join(self.directory, self.STAMP_FILE)) as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError):
            return None

    def on_train_begin(self, logs=None):
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        weights = {id(v) for v in model.weights}
        rng_states = [v for v in model.variables if id(v) not in weights]
        checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                         rng_states=rng_states, epoch=self._epoch)
        if self._read_stamp() != self.stamp:
            if os.path.exists(self.directory):
                log.info("discarding retrain checkpoints in %s (written for another "
                         "training)", self.directory)
                shutil.rmtree(self.directory)
            os.makedirs(self.directory)
            files.write_json(os.path.join(self.directory, self.STAMP_FILE), self.stamp)
        self._manager = tf.train.CheckpointManager(checkpoint, self.directory,
                                                   max_to_keep=self.max_to_keep)
        self.resumed_from = 0
        if restore_readable(checkpoint, self._manager, assert_consumed=True):
            self.resumed_from = int(self._epoch.numpy())
            # keras' own resume hook (what keras.callbacks.BackupAndRestore sets)
            model._initial_epoch = self.resumed_from

    def on_epoch_end(self, epoch, logs=None):
        self._epoch.assign(epoch + 1)
        self._manager.save(checkpoint_number=epoch + 1)

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None  # a later fit of the same model starts normally
        if self.delete_on_end:
            self.delete()

    def delete(self) -> None:
        """Removes the checkpoints (once what they lead to, e.g. model.keras, is saved)."""
        shutil.rmtree(self.directory, ignore_errors=True)
