"""A character-level language model in the recurrent cell space (--dataset=text): the
splits are the text itself in order, the supernet's per-step logits equal its child
model's, and a search's retrained child beats the unigram model (the best model that
ignores the past) with the perplexity result.json reports recomputed from model.keras."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import app, flags

import tf_enas.supernet  # noqa: F401  (registers the layers model.keras holds)
from tf_enas import data
from tf_enas.cell_space import RNNCellSpace
from tf_enas.controller import ControllerConfig
from tf_enas.bin import search as search_bin
from tf_enas.retrain import RetrainConfig
from tf_enas.search import Search, SearchConfig
from tf_enas.supernet.rnn_cell import RNNSupernet

WORDS = ["enas", "cell", "node", "relu", "tanh", "gate", "search", "policy"]


def words_text(n_words=1200, seed=0):
    """Random words from a fixed list: the next character is mostly predictable from the
    ones before it, not from character frequencies alone."""
    return " ".join(np.random.default_rng(seed).choice(WORDS, n_words))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "words.txt"
    path.write_text(words_text(), encoding="utf-8")
    return str(path)


def decode(x, vocab):
    return "".join(vocab[i] for i in np.argmax(x, -1).ravel())


def test_text_splits_are_the_text_in_order():
    text = words_text(300)
    s = data.text_splits(text, val_fraction=0.1, length=10)
    vocab = sorted(set(text))
    n = (len(text) - 1) // 10
    assert s.num_classes == len(vocab) and s.sequence_targets
    train, test = round(n * 0.8), n - round(n * 0.8)  # TEST_FRACTION 0.2
    val = round(train * 0.1)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (train - val, val, test)
    x = np.concatenate([s.x_train, s.x_val, s.x_test])
    y = np.concatenate([s.y_train, s.y_val, s.y_test])
    assert decode(x, vocab) == text[:n * 10]
    assert "".join(vocab[i] for i in y.ravel()) == text[1:n * 10 + 1]
    assert x.shape == (n, 10, len(vocab)) and x.dtype == np.float32


@pytest.mark.parametrize("text, message", [
    ("aaaa" * 100, "1 distinct character"),
    ("ab" * 20, "too few to give training, validation and test windows"),
])
def test_text_splits_reject_what_cannot_be_modelled(text, message):
    with pytest.raises(ValueError, match=message):
        data.text_splits(text, length=10)


def test_text_file_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="pass path=FILE"):
        data.load("text")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café ".encode("latin-1") * 100)
    with pytest.raises(ValueError, match="latin1.txt.*not UTF-8"):
        data.load("text", path=str(bad))


def test_per_step_logits_of_the_supernet_equal_its_child_model():
    space = RNNCellSpace(3)
    net = RNNSupernet(space, (7, 5), 5, width=8, sequence_output=True)
    x = tf.one_hot(tf.random.stateless_uniform((4, 7), (1, 2), 0, 5, tf.int32), 5)
    for text in ("tanh | 0:relu | 1:identity", "sigmoid | 0:tanh | 0:relu"):
        child = space.parse(text)
        model = net.child_model(child)
        want = net(x, tf.constant(child)).numpy()
        assert want.shape == (4, 7, 5)
        np.testing.assert_allclose(model(x).numpy(), want, atol=1e-5)


def test_search_of_a_language_model_beats_the_unigram_model(tmp_path):
    """The real Search (search, derive, retrain) on a text: test perplexity below half the
    unigram model's exp(−mean log f(next char)), f the training text's character
    frequencies, and equal to exp(mean cross-entropy) of model.keras on the test windows."""
    splits = data.text_splits(words_text(), length=12)  # short windows: a short trace
    cfg = SearchConfig(dataset="text", space="rnn_cell", num_nodes=3, width=16,
                       batch_size=32, controller_steps=2, controller_batch=4,
                       val_batch_size=64, epochs=1, derive_samples=2,
                       controller=ControllerConfig(lstm_size=16),
                       retrain=RetrainConfig(epochs=8, batch_size=16, learning_rate=0.02))
    result = Search(cfg, str(tmp_path), splits=splits, verbose=0).run()
    freq = np.bincount(splits.y_train.ravel(), minlength=splits.num_classes) + 1.0
    unigram = np.exp(-np.mean(np.log((freq / freq.sum())[splits.y_test.ravel()])))
    assert result["test_perplexity"] < 0.5 * unigram, (result["test_perplexity"], unigram)

    model = keras.saving.load_model(os.path.join(tmp_path, "model.keras"))
    logits = model.predict(splits.x_test, verbose=0).astype(np.float64)
    z = logits - logits.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))  # log-softmax
    picked = np.take_along_axis(log_p, splits.y_test[..., None], -1)
    assert result["test_perplexity"] == pytest.approx(np.exp(-picked.mean()), rel=1e-4)
    on_disk = json.load(open(os.path.join(tmp_path, "result.json")))
    assert on_disk["test_perplexity"] == result["test_perplexity"]


def test_binary_says_a_language_model_needs_the_recurrent_cell_space(text_file, tmp_path):
    flags.FLAGS(["tf-enas-search", "--dataset=text", f"--dataset_path={text_file}",
                 "--space=macro", f"--output_dir={tmp_path}"])
    try:
        with pytest.raises(app.UsageError, match="--dataset=text has a target per step .*"
                           "pass --space=rnn_cell, not --space=macro"):
            search_bin.main(["tf-enas-search"])
    finally:
        flags.FLAGS.unparse_flags()
