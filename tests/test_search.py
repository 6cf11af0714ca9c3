"""Search loop: exact resume, clipping that clips, non-finite steps skipped."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_enas.controller import ControllerConfig
from tf_enas.data import load
from tf_enas.retrain import RetrainConfig
from tf_enas.search import Search, SearchConfig


@pytest.fixture(scope="module")
def splits():
    return load("mnist1d", seed=0, num_samples=600)


def tiny(**overrides) -> SearchConfig:
    config = SearchConfig(num_samples=600, num_layers=3, width=8, batch_size=32,
                          controller_steps=2, controller_batch=4, val_batch_size=32, epochs=2,
                          derive_samples=4, controller=ControllerConfig(lstm_size=16),
                          retrain=RetrainConfig(epochs=1))
    return dataclasses.replace(config, **overrides)


def state(search: Search):
    """Every number a search carries between epochs."""
    vars_ = (search.supernet.variables + list(search.controller.variables)
             + search.controller.optimizer.variables + search.shared.velocity)
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in search.history]
    return [v.numpy() for v in vars_], history


JOINT = dict(continuous=("learning_rate", "momentum", "weight_decay"), reward="loss",
             lookahead_steps=1, response="unrolled", response_every=2,
             retrain=RetrainConfig(epochs=1, optimizer="sgd"))


@pytest.mark.parametrize("kind", ["plain", "joint"])
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, splits, kind):
    # joint: 2 layers (the unrolled response's second-order trace, three times, is the cost)
    extra = dict(JOINT, num_layers=2) if kind == "joint" else {}
    straight = Search(tiny(**extra), str(tmp_path / "a"), splits=splits, verbose=0)
    straight.search()
    first = Search(tiny(epochs=1, **extra), str(tmp_path / "b"), splits=splits, verbose=0)
    first.search()
    first.close()  # the "kill": only the checkpoint on disk survives (and the lock is freed)
    resumed = Search(tiny(**extra), str(tmp_path / "b"), splits=splits, verbose=0)
    resumed.search()
    (va, ha), (vb, hb) = state(straight), state(resumed)
    assert ha == hb and len(ha) == 2
    for a, b in zip(va, vb):
        np.testing.assert_array_equal(a, b)
    # and the random streams continue identically
    for a, b in zip(straight.controller.sample(3), resumed.controller.sample(3)):
        np.testing.assert_array_equal(a, b)


def test_global_norm_clipping_really_clips(tmp_path, splits):
    clip, lr = 1e-3, 0.05
    s = Search(tiny(momentum=0.0, grad_clip_norm=clip, lr_max=lr), str(tmp_path), splits=splits,
               verbose=0)
    before = [v.numpy() for v in s.supernet.trainable_variables]
    logs = s.train_step(tf.constant(splits.x_train[:32]), tf.constant(splits.y_train[:32]))
    assert float(logs["train/grad_norm"]) > 100 * clip  # the raw gradient is much larger
    delta = np.sqrt(sum(np.sum((v.numpy() - b) ** 2)
                        for v, b in zip(s.supernet.trainable_variables, before)))
    # heavy ball from zero velocity at the schedule's start: ‖Δw‖ = lr · clip
    np.testing.assert_allclose(delta, lr * clip, rtol=1e-3)


def test_non_finite_steps_are_skipped_and_counted(tmp_path, splits):
    # lr 1e38 makes the next L2 term overflow to inf
    s = Search(tiny(lr_max=1e38, lr_min=1e38, epochs=1), str(tmp_path), splits=splits,
               verbose=0)
    history = s.search()
    assert int(s.shared.skipped_steps.numpy()) > 0 and history[-1]["train/skipped_steps"] > 0
    for v in s.supernet.variables:
        assert np.all(np.isfinite(v.numpy())), v.path
    # a child whose logits are non-finite gets the worst reward, 0
    x = tf.constant(splits.x_val[:8])
    rewards = s.shared.accuracies(s.controller.sample(4)[0], x, tf.constant(splits.y_val[:8]))
    assert np.all((rewards.numpy() >= 0) & (rewards.numpy() <= 1))


def test_time_budget_stops_the_search(tmp_path, splits):
    s = Search(tiny(epochs=50, time_budget_s=1e-3), str(tmp_path), splits=splits, verbose=0)
    assert len(s.search()) == 1  # the first epoch always runs, then the budget is spent


def test_proxy_derive_keeps_the_child_whose_short_retrain_is_best(tmp_path, splits):
    """derive_proxy_epochs = retrain epochs: the derived child is the argmax of the proxy
    accuracies, and the retrain that follows (the product's own path) reproduces the
    derived child's proxy accuracy."""
    config = tiny(epochs=1, derive_samples=3, derive_proxy_epochs=2,
                  retrain=RetrainConfig(epochs=2, width=4))
    result = Search(config, str(tmp_path), splits=splits, verbose=0).run()
    proxy = result["proxy_val_accuracies"]
    assert len(proxy) == 3
    assert result["architecture"] == max(proxy, key=proxy.get)
    assert result["val_accuracy"] == pytest.approx(proxy[result["architecture"]], abs=1e-6)


def test_proxy_derive_scores_on_the_held_out_validation_set_under_include_val(tmp_path, splits):
    """The proxy retrain never trains on the validation set it is scored on: with the final
    retrain's include_val set, a child's proxy accuracy is the one it has without."""
    from tf_enas import results

    with Search(tiny(derive_proxy_epochs=1), str(tmp_path), splits=splits, verbose=0) as s:
        child = s.sample_children(1)[0].numpy()[0]
        held_out = results.proxy_val_accuracy(s, child)
        s.config = tiny(derive_proxy_epochs=1, retrain=RetrainConfig(epochs=1, include_val=True))
        assert results.proxy_val_accuracy(s, child) == held_out


def test_param_budget_derives_only_children_within_it(tmp_path, splits):
    """derive_max_params at the smallest retrained parameter count of the space (found by
    enumerating every child and rebuilding it from its text, found_child.child_model):
    the candidates are the children of that count, distinct; one parameter below it is a
    clear error."""
    import itertools

    from tf_enas import found_child, results

    config = tiny(num_layers=2, ops=("conv3", "maxpool3"), retrain=RetrainConfig(epochs=1))
    with Search(config, str(tmp_path), splits=splits, verbose=0) as s:
        counts = {}
        for child in itertools.product(*[range(d.num_values) for d in s.space.decisions]):
            text = s.space.to_string(np.array(child))
            counts[text] = found_child.child_model(text, splits.input_shape, splits.num_classes,
                                                   config.width).count_params()
        smallest = min(counts.values())
        fitting = {t for t, n in counts.items() if n == smallest}
        assert 0 < len(fitting) < config.derive_samples < len(counts)
        s.config = dataclasses.replace(config, derive_max_params=smallest)
        derived = results.derive(s)  # fewer fit than derive_samples: every round is drawn
        assert derived["derive_draws"] == results.MAX_DRAW_ROUNDS * config.derive_samples
        assert derived["derive_params"] == {t: smallest for t in fitting}
        assert derived["child"] in fitting
        s.config = dataclasses.replace(config, derive_max_params=smallest - 1)
        with pytest.raises(ValueError, match=rf"derive_max_params={smallest - 1}: none of "
                                             rf"\d+ children .* retrain width 8"):
            results.derive(s)


def test_random_search_samples_uniformly(tmp_path, splits):
    from tf_enas.search import RandomSearch

    s = RandomSearch(tiny(), str(tmp_path), splits=splits, verbose=0)
    children = s.sample_children(6000)[0].numpy()
    for k, d in enumerate(s.space.decisions):
        freq = np.bincount(children[:, k], minlength=d.num_values) / len(children)
        se = np.sqrt((1 / d.num_values) * (1 - 1 / d.num_values) / len(children))
        assert np.all(np.abs(freq - 1 / d.num_values) < 5 * se), d.name
    history = s.search()
    assert 0 <= history[-1]["controller/reward"] <= 1


def test_rerun_with_other_settings_is_refused_naming_them(tmp_path, splits):
    from tf_enas.run_dir import ConfigMismatch

    Search(tiny(epochs=1), str(tmp_path), splits=splits, verbose=0).close()
    with pytest.raises(ConfigMismatch, match=r"width: 8 \(in config.json\) → 16 \(now\)"):
        Search(tiny(epochs=1, width=16), str(tmp_path), splits=splits, verbose=0)
    fresh = Search(tiny(epochs=1, width=16), str(tmp_path), splits=splits, verbose=0,
                   overwrite=True)
    assert fresh.run_dir.status == "overwritten"
    fresh.close()


def test_second_concurrent_run_is_refused(tmp_path, splits):
    from tf_enas.run_dir import RunDirectoryBusy

    with Search(tiny(), str(tmp_path), splits=splits, verbose=0):
        with pytest.raises(RunDirectoryBusy, match="two runs cannot share"):
            Search(tiny(), str(tmp_path), splits=splits, verbose=0)


def test_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, splits, caplog):
    two = Search(tiny(), str(tmp_path / "two"), splits=splits, verbose=0)
    two.search()
    prefix = two.manager.latest_checkpoint
    two.close()
    data_file = prefix + ".data-00000-of-00001"
    with open(data_file, "r+b") as f:  # cut short, as a kill in the middle of a copy leaves it
        f.truncate(os.path.getsize(data_file) // 2)
    resumed = Search(tiny(), str(tmp_path / "two"), splits=splits, verbose=0)
    with caplog.at_level("WARNING"):
        resumed.search()  # restores epoch 1, warns, and redoes epoch 2
    assert "is damaged" in caplog.text and "ckpt-2" in caplog.text
    (va, ha), (vb, hb) = state(two), state(resumed)
    assert ha == hb
    for a, b in zip(va, vb):
        np.testing.assert_array_equal(a, b)
    resumed.close()
