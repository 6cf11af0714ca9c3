"""JointSearch on a tiny MNIST-1D: non-finite safety (a child with a huge learning rate),
exactly-zero IFT response for learning rate and momentum vs a non-zero unrolled one (checked
against finite differences of the lookahead loss), config errors, and an end-to-end run whose
result.json holds the chosen optimizer hyperparameters that the retrain used."""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_enas import data, hypergrad
from tf_enas.controller import ControllerConfig
from tf_enas.joint_search import JointConfig, JointSearch
from tf_enas.retrain import RetrainConfig


@pytest.fixture(scope="module")
def splits():
    return data.load("mnist1d", seed=0, val_fraction=0.1, num_samples=600)


def _config(**kw):
    base = dict(num_samples=600, num_layers=2, ops=("conv3", "maxpool3"), width=8,
                batch_size=64, controller=ControllerConfig(lstm_size=8), controller_steps=2,
                controller_batch=4, val_batch_size=32, epochs=1, derive_samples=4,
                retrain=RetrainConfig(epochs=1, optimizer="sgd"), lookahead_steps=2,
                lookahead_batch_size=32, cg_iterations=2, ift_batch_size=32)
    return JointConfig(**(base | kw))


def _weights(search):
    return [v.numpy().copy() for v in search.supernet.trainable_variables]


def test_huge_learning_rate_is_skipped_counted_and_worst(tmp_path, splits):
    search = JointSearch(_config(), str(tmp_path), splits=splits, verbose=0)
    x, y = search._x_train[:64], search._y_train[:64]
    child = tf.constant(search.space.random(np.random.default_rng(0)))
    ok = tf.constant([0.05, 0.9, 1e-4])
    huge = tf.constant([1e30, 0.9, 1e-4])
    search.train_child_step(x, y, child, ok)
    before = _weights(search)
    logs = search.train_child_step(x, y, child, huge)
    assert float(logs["train/step_skipped"]) == 1.0
    assert int(search.skipped_steps.numpy()) == 1
    for a, b in zip(before, _weights(search)):
        np.testing.assert_array_equal(a, b)
    children = tf.stack([child, child])
    losses = search.lookahead_losses(children, tf.stack([ok, huge]), search._x_val[:32],
                                     search._y_val[:32], x[:32], y[:32])
    assert np.isfinite(losses[0].numpy()) and not np.isfinite(losses[1].numpy())
    rewards = search._reward(losses).numpy()
    assert rewards[1] == -search.config.reward_loss_cap and rewards[1] < rewards[0]
    history = search.search()  # the search goes on
    assert len(history) == 1
    assert all(np.all(np.isfinite(w)) for w in _weights(search))


def test_learning_rate_zero_ift_response_nonzero_unrolled(tmp_path, splits):
    search = JointSearch(_config(response="ift", cg_damping=1.0, lookahead_steps=1),
                         str(tmp_path), splits=splits, verbose=0)
    xv, yv = search._x_val[:32], search._y_val[:32]
    xt, yt = search._x_train[:32], search._y_train[:32]
    logs = search.controller_step(xv, yv)  # one IFT controller step, end to end
    assert logs["response/computed"] == 1.0 and logs["response/cg_iterations"] >= 1
    assert logs["response/response_grad_norm"] > 0 and logs["response/nonfinite"] == 0
    children, values = search.controller.sample(4)
    _, dc, _, info = search.ift_couplings(children, values, xv, yv, xt, yt)
    dc = dc.numpy()
    assert not info["negative_curvature"].numpy().any()
    assert np.all(dc[:, 0] == 0.0) and np.all(dc[:, 1] == 0.0)  # learning rate, momentum
    assert np.all(np.abs(dc[:, 2]) > 0)                          # weight decay
    assert info["iterations"].numpy().min() >= 1
    dldh, losses = search.unrolled_hypergradients(children, values, xv, yv, xt, yt)
    assert np.all(np.abs(dldh.numpy()[:, 0]) > 0)
    np.testing.assert_allclose(
        losses.numpy(), search.lookahead_losses(children, values, xv, yv, xt, yt).numpy(),
        rtol=1e-4)
    # K = 1: w_1 = w − η·g₀ (zero velocity), so ∂L_val(w_1)/∂η = −∇L_val(w_1)·g₀ exactly
    params, child, vals = search._params(), children[0], values[0]
    with tf.GradientTape() as tape:
        tape.watch(params)
        train = search._ce(params, xt, yt, child) + vals[2] * tf.add_n(
            [tf.reduce_sum(tf.square(params[i])) for i in search._l2_index])
    g0 = tape.gradient(train, params, unconnected_gradients="zero")
    w1 = [p - vals[0] * g for p, g in zip(params, g0)]
    with tf.GradientTape() as tape:
        tape.watch(w1)
        val = search._ce(w1, xv, yv, child)
    gv = tape.gradient(val, w1, unconnected_gradients="zero")
    want = -sum(float(tf.reduce_sum(a * b)) for a, b in zip(gv, g0))
    np.testing.assert_allclose(dldh.numpy()[0, 0], want, rtol=2e-3)
    assert np.all(dldh.numpy()[:, 1] == 0.0)  # momentum: no effect in one step from v = 0


@pytest.mark.parametrize("kw, match", [
    (dict(response="unrolled", lookahead_steps=0), "lookahead_steps >= 1"),
    (dict(response="ift", controller_batch=3), "controller_batch >= 4"),
    (dict(response="bogus"), "response must be one of"),
    (dict(retrain=RetrainConfig(optimizer="adamw")), "retrain_optimizer=sgd"),
    (dict(continuous=("dropout",)), "continuous must be"),
    (dict(ranges={"learning_rate": (0.1, 0.01)}), "low < high"),
])
def test_config_errors_name_the_setting(kw, match):
    with pytest.raises(ValueError, match=match):
        _config(**kw).validate()


def test_run_writes_chosen_optimizer_hyperparameters(tmp_path, splits):
    search = JointSearch(_config(response="unrolled", lookahead_steps=1), str(tmp_path),
                         splits=splits, verbose=0)
    result = search.run()
    with open(os.path.join(tmp_path, "result.json")) as f:
        saved = json.load(f)
    chosen = saved["optimizer_hyperparameters"]
    assert set(chosen) == {"learning_rate", "momentum", "weight_decay"}
    assert saved["hyperparameters"]["learning_rate"] == pytest.approx(chosen["learning_rate"])
    assert saved["hyperparameters"]["momentum"] == pytest.approx(chosen["momentum"])
    assert saved["hyperparameters"]["weight_decay"] == pytest.approx(
        2 * chosen["weight_decay"] / (1 - chosen["momentum"]))
    assert saved["response"]["response"] == "unrolled"
    assert saved["response"]["response_grad_norm"] > 0
    assert "dloss_dlearning_rate" in saved["response"]
    assert result["test_accuracy"] == saved["test_accuracy"]
    assert os.path.isdir(os.path.join(tmp_path, "tensorboard"))


def test_ift_couplings_match_a_dense_solve(tmp_path, splits):
    """c_i = uᵀ∇_w L_train(d_i) with u = (H_A + δI)⁻¹ mean_{j∈A} ∇_w L_val(a_j) from the
    other half A; H_A the dense Hessian of half A's mean training loss (children summed in
    a Python loop, not tf.map_fn; columns by HVPs) and ∂c_i/∂λ = uᵀ2w in closed form. δ is
    set above the most negative eigenvalue, so CG converges to the dense solution."""
    search = JointSearch(_config(response="ift", cg_iterations=400, width=4), str(tmp_path),
                         splits=splits, verbose=0)
    xv, yv = search._x_val[:32], search._y_val[:32]
    xt, yt = search._x_train[:32], search._y_train[:32]
    children, values = search.controller.sample(4)
    params = search._params()
    flat = lambda ts: np.concatenate([np.ravel(t) for t in ts]).astype(np.float64)
    n = sum(int(np.prod(p.shape)) for p in params)
    two_w = flat([2 * p if k in search._l2_index else tf.zeros_like(p)
                  for k, p in enumerate(params)])

    def mean_loss(fn, idx):
        return lambda p: tf.add_n([fn(p, i) for i in idx]) / len(idx)

    train = lambda p, i: search._train_loss_fn(children[i], xt, yt)(p, values[i])
    val = lambda p, i: search._ce(p, xv, yv, children[i])
    halves, dense = ((0, 1), (2, 3)), []
    for idx in halves:
        hvp = tf.function(lambda v, f=mean_loss(train, idx): hypergrad.hvp(
            f, params, [tf.reshape(t, p.shape) for t, p in zip(
                tf.split(v, [int(np.prod(p.shape)) for p in params]), params)]))
        cols = [flat(hvp(tf.one_hot(j, n))) for j in range(n)]
        h = np.stack(cols, 1)
        np.testing.assert_allclose(h, h.T, atol=1e-3 * np.abs(h).max())
        dense.append(((h + h.T) / 2,
                      flat(hypergrad.gradient(mean_loss(val, idx), params)[1])))
    damping = 1.0 + max(0.0, -min(np.linalg.eigvalsh(h).min() for h, _ in dense))
    search.config = dataclasses.replace(search.config, cg_damping=float(damping))
    cpl, dc, _, info = search.ift_couplings(children, values, xv, yv, xt, yt)
    assert info["converged"].numpy().all() and not info["negative_curvature"].numpy().any()
    for (h, rhs), other in zip(dense, halves[::-1]):
        u = np.linalg.solve(h + damping * np.eye(n), rhs)
        for i in other:
            g = flat(hypergrad.gradient(lambda p: train(p, i), params)[1])
            np.testing.assert_allclose(cpl.numpy()[i], u @ g, rtol=2e-3, atol=1e-7)
            np.testing.assert_allclose(dc.numpy()[i, 2], u @ two_w, rtol=2e-3, atol=1e-7)
