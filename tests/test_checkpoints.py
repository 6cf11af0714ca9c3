"""checkpoints: a damaged latest checkpoint falls back to the previous one; a killed
model.fit resumes after its last epoch with the weights of an uninterrupted fit."""
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_enas.checkpoints import EpochCheckpoint, NoReadableCheckpoint, restore_readable

DATA = "ckpt-{}.data-00000-of-00001"


def _module():
    m = tf.Module()
    m.v = tf.Variable(tf.zeros(1000))
    m.step = tf.Variable(0, dtype=tf.int64)
    return m


def _two_checkpoints(directory):
    """ckpt-1 with v = 1, step = 1; ckpt-2 with v = 2, step = 2."""
    m = _module()
    ckpt = tf.train.Checkpoint(m=m)
    manager = tf.train.CheckpointManager(ckpt, directory, max_to_keep=2)
    for i in (1, 2):
        m.v.assign(tf.fill([1000], float(i)))
        m.step.assign(i)
        manager.save(checkpoint_number=i)
    return manager


def _restore(directory):
    m = _module()
    ckpt = tf.train.Checkpoint(m=m)
    return m, restore_readable(ckpt, tf.train.CheckpointManager(ckpt, directory, max_to_keep=2))


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def test_intact_latest_checkpoint_is_restored(tmp_path):
    _two_checkpoints(str(tmp_path))
    m, restored = _restore(str(tmp_path))
    assert restored == str(tmp_path / "ckpt-2")
    assert int(m.step.numpy()) == 2 and np.all(m.v.numpy() == 2.0)


def test_truncated_latest_data_falls_back_to_the_previous_with_a_warning(tmp_path, caplog):
    _two_checkpoints(str(tmp_path))
    _truncate(tmp_path / DATA.format(2))
    with caplog.at_level(logging.WARNING, logger="tf_enas.checkpoints"):
        m, restored = _restore(str(tmp_path))
    assert restored == str(tmp_path / "ckpt-1")
    assert int(m.step.numpy()) == 1 and np.all(m.v.numpy() == 1.0)
    assert f"{tmp_path / DATA.format(2)}: Read less bytes than requested" in caplog.text
    assert f"restoring the previous one, {tmp_path / 'ckpt-1'}" in caplog.text


def test_the_next_save_after_a_fallback_replaces_the_damaged_checkpoint(tmp_path):
    _two_checkpoints(str(tmp_path))
    _truncate(tmp_path / DATA.format(2))
    m = _module()
    ckpt = tf.train.Checkpoint(m=m)
    manager = tf.train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=2)
    assert restore_readable(ckpt, manager) == str(tmp_path / "ckpt-1")
    m.v.assign(tf.fill([1000], 5.0))  # the epoch after the restored one, run again
    manager.save(checkpoint_number=2)
    m2, restored = _restore(str(tmp_path))
    assert restored == str(tmp_path / "ckpt-2") and np.all(m2.v.numpy() == 5.0)
    assert int(m2.step.numpy()) == 1


def test_damaged_index_and_missing_data_fall_back_too(tmp_path, caplog):
    _two_checkpoints(str(tmp_path))
    _truncate(tmp_path / "ckpt-2.index")
    with caplog.at_level(logging.WARNING, logger="tf_enas.checkpoints"):
        m, restored = _restore(str(tmp_path))
    assert restored == str(tmp_path / "ckpt-1") and int(m.step.numpy()) == 1
    assert f"{tmp_path / 'ckpt-2.index'}: not an sstable" in caplog.text
    os.remove(tmp_path / DATA.format(1))
    os.remove(tmp_path / "ckpt-2.index")
    with pytest.raises(NoReadableCheckpoint) as e:
        _restore(str(tmp_path))
    assert str(tmp_path / "ckpt-1.index") not in str(e.value)
    assert str(tmp_path / DATA.format(1)) in str(e.value) and "--overwrite" in str(e.value)
    assert str(tmp_path / "ckpt-2.index") in str(e.value)


def test_no_checkpoint_restores_nothing(tmp_path):
    m, restored = _restore(str(tmp_path))
    assert restored is None and int(m.step.numpy()) == 0


def test_a_readable_checkpoint_of_another_shape_is_not_taken_for_damage(tmp_path):
    _two_checkpoints(str(tmp_path))
    m = _module()
    m.v = tf.Variable(tf.zeros(10))
    ckpt = tf.train.Checkpoint(m=m)
    with pytest.raises(ValueError, match="incompatible"):
        restore_readable(ckpt, tf.train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=2))


# --- a killed retrain resumes ----------------------------------------------------------
EPOCHS = 4
_rng = np.random.default_rng(0)
X = _rng.normal(size=(96, 6)).astype("float32")
Y = (X[:, 0] + X[:, 1] > 0).astype("int32")


class Killed(Exception):
    pass


class _KillAfter(keras.callbacks.Callback):
    """Stands in for a SIGKILL right after epoch `epoch`'s checkpoint was written."""

    def __init__(self, epoch):
        super().__init__()
        self.kill_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.kill_epoch:
            raise Killed


def _fit(callbacks=()):
    """A fresh process's retrain: seeded, dropout, cosine-decayed AdamW, shuffled batches."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(0.3), keras.layers.Dense(2)])
    model.compile(keras.optimizers.AdamW(keras.optimizers.schedules.CosineDecay(0.02, 24)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(X, Y, batch_size=16, epochs=EPOCHS, verbose=0,
                        callbacks=list(callbacks))
    return model, history.epoch


@pytest.fixture(scope="module")
def uninterrupted():
    model, epochs = _fit()
    assert epochs == [0, 1, 2, 3]
    return [w.numpy() for w in model.weights]


def _assert_same_weights(model, expected):
    for w, e in zip(model.weights, expected):
        np.testing.assert_array_equal(w.numpy(), e)  # bit for bit: same steps, same state


def test_killed_retrain_resumes_at_its_last_epoch_with_the_same_weights(tmp_path, uninterrupted):
    stamp = {"child": [0, 1], "epochs": EPOCHS}
    with pytest.raises(Killed):
        _fit([EpochCheckpoint(tmp_path, stamp), _KillAfter(2)])
    cb = EpochCheckpoint(tmp_path, stamp)
    model, epochs = _fit([cb])
    assert cb.resumed_from == 2 and epochs == [2, 3]  # only the missing epochs ran
    _assert_same_weights(model, uninterrupted)
    assert model._initial_epoch is None  # a later fit of this model starts at epoch 0
    cb = EpochCheckpoint(tmp_path, stamp, delete_on_end=True)
    model, epochs = _fit([cb])  # rerun after the end: nothing left to train
    assert cb.resumed_from == 4 and epochs == [] and not os.path.exists(tmp_path)
    _assert_same_weights(model, uninterrupted)


def test_damaged_last_retrain_checkpoint_costs_one_epoch(tmp_path, uninterrupted, caplog):
    stamp = {"child": [0, 1]}
    with pytest.raises(Killed):
        _fit([EpochCheckpoint(tmp_path, stamp), _KillAfter(3)])
    _truncate(tmp_path / DATA.format(3))
    cb = EpochCheckpoint(tmp_path, stamp)
    with caplog.at_level(logging.WARNING, logger="tf_enas.checkpoints"):
        model, epochs = _fit([cb])
    assert cb.resumed_from == 2 and epochs == [2, 3]
    assert str(tmp_path / DATA.format(3)) in caplog.text
    _assert_same_weights(model, uninterrupted)


def test_retrain_checkpoints_of_another_stamp_are_discarded(tmp_path, uninterrupted):
    with pytest.raises(Killed):
        _fit([EpochCheckpoint(tmp_path, {"child": [1, 1]}), _KillAfter(2)])
    cb = EpochCheckpoint(tmp_path, {"child": [0, 1]})
    model, epochs = _fit([cb])
    assert cb.resumed_from == 0 and epochs == [0, 1, 2, 3]
    _assert_same_weights(model, uninterrupted)
