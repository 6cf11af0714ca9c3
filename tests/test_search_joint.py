"""The joint search is configuration of Search: config errors name the setting, a run's
result.json holds the chosen optimizer hyperparameters that the retrain used, a child with
a huge learning rate gets the worst reward, and a new estimator plugs into the loop."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_enas import data, hypergrad, response, results, retrain
from tf_enas.controller import ControllerConfig
from tf_enas.retrain import RetrainConfig
from tf_enas.search import Search, SearchConfig

CONTINUOUS = ("learning_rate", "momentum", "weight_decay")


@pytest.fixture(scope="module")
def splits():
    return data.load("mnist1d", seed=0, val_fraction=0.1, num_samples=600)


def joint_config(**kw):
    base = dict(num_samples=600, num_layers=2, ops=("conv3", "maxpool3"), width=4,
                batch_size=64, controller=ControllerConfig(lstm_size=8), controller_steps=2,
                controller_batch=4, val_batch_size=32, epochs=1, derive_samples=4,
                retrain=RetrainConfig(epochs=1, optimizer="sgd"), continuous=CONTINUOUS,
                reward="loss", lookahead_steps=1, lookahead_batch_size=32)
    return SearchConfig(**(base | kw))


@pytest.mark.parametrize("kw, match", [
    (dict(response="unrolled", lookahead_steps=0), "lookahead_steps >= 1"),
    (dict(response="ift", controller_batch=3), "controller_batch >= 4"),
    (dict(response="bogus"), "response must be one of"),
    (dict(response="ift", reward="accuracy"), "needs reward=loss"),
    (dict(solver="lu"), "solver must be one of"),
    (dict(truncate=2), "truncate <= lookahead_steps"),
    (dict(retrain=RetrainConfig(optimizer="adamw")), "retrain_optimizer=sgd"),
    (dict(continuous=("dropout",)), "continuous must be"),
    (dict(ranges={"learning_rate": (0.1, 0.01)}), "low < high"),
    (dict(weight_decay_per="layer", continuous=("learning_rate",)),
     "weight_decay_per=layer needs weight_decay"),
    (dict(weight_decay_per="tensor", space="micro"), "weight_decay_per=tensor needs"),
    (dict(weight_decay_per="kernel"), "weight_decay_per must be one of"),
    (dict(response="unrolled", lookahead_memory="tape"), "lookahead_memory must be one of"),
    (dict(response="ift", gauss_newton_jvp="forward"), "gauss_newton_jvp must be one of"),
])
def test_config_errors_name_the_setting(kw, match):
    with pytest.raises(ValueError, match=match):
        joint_config(**kw).validate()


def test_huge_learning_rate_child_gets_the_worst_reward(tmp_path, splits):
    search = Search(joint_config(), str(tmp_path), splits=splits, verbose=0)
    children, _ = search.controller.sample(2)
    values = tf.constant([[0.05, 0.9, 1e-4], [1e30, 0.9, 1e-4]])
    state = search.shared.state()
    batch = (tf.constant(splits.x_val[:32]), tf.constant(splits.y_val[:32]))
    losses, _, terms, _ = search.phase.score_only.evaluate(search.shared.objective, state,
                                                           children, values, batch, batch)
    assert terms is None
    assert np.isfinite(losses[0].numpy()) and not np.isfinite(losses[1].numpy())
    rewards = search.phase.rewards(losses, tf.zeros(2)).numpy()
    assert rewards[1] == -search.config.reward_loss_cap and rewards[1] < rewards[0]


def test_run_writes_chosen_optimizer_hyperparameters(tmp_path, splits):
    search = Search(joint_config(response="unrolled"), str(tmp_path), splits=splits,
                    verbose=0)
    result = search.run()
    with open(os.path.join(tmp_path, "result.json")) as f:
        saved = json.load(f)
    chosen = saved["optimizer_hyperparameters"]
    assert chosen == search.controller.medians(search.space.parse(saved["architecture"]))
    assert saved["hyperparameters"]["learning_rate"] == pytest.approx(chosen["learning_rate"])
    assert saved["hyperparameters"]["momentum"] == pytest.approx(chosen["momentum"])
    assert saved["hyperparameters"]["weight_decay"] == pytest.approx(
        2 * chosen["weight_decay"] / (1 - chosen["momentum"]))
    assert saved["response"]["response"] == "unrolled"
    assert saved["response"]["computed"] == 1.0
    assert saved["response"]["response_grad_norm"] > 0
    assert "dloss_dvalues_mean/momentum" in saved["response"]
    assert result["test_accuracy"] == saved["test_accuracy"]


PER_TENSOR_KEYS = ("stem/conv/kernel", "layer_0/conv3/conv/kernel",
                   "layer_0/maxpool3/conv/kernel", "layer_1/conv3/conv/kernel",
                   "layer_1/maxpool3/conv/kernel", "head/dense/kernel")


@pytest.mark.parametrize("per, keys", [("layer", ("stem", "layer_0", "layer_1", "head")),
                                       ("tensor", PER_TENSOR_KEYS)])
def test_weight_decay_per_group_is_the_retrains_l2(tmp_path, splits, per, keys):
    """One λ per layer group or per kernel tensor: each a decision, each the child's
    l2_per_<per> entry (no decoupled decay on top), each the L2 term of its kernels in the
    retrained model (its regularization losses against λ_g‖W‖² summed by hand, g the
    layer's name or the kernel's path)."""
    search = Search(joint_config(weight_decay_per=per), str(tmp_path), splits=splits,
                    verbose=0)
    names = ["weight_decay_" + k.replace("/", ".") for k in keys]
    assert [d.name for d in search.config.decisions()] == ["learning_rate", "momentum", *names]
    child = search.sample_children(1)[0][0].numpy()
    searched, hyperparameters = results.child_hyperparameters(search, child)
    l2 = hyperparameters[f"l2_per_{per}"]
    assert l2 == {k: searched[n] for k, n in zip(keys, names)}
    assert hyperparameters["weight_decay"] == 0.0
    model = results.retrain_model(search, child)
    retrain.add_l2(model, l2, per)
    group = {"layer": lambda layer, w: layer.name, "tensor": lambda layer, w: w.path}[per]
    kernels = [(layer, w) for layer in model.layers for w in layer.trainable_weights
               if w.path.endswith("kernel")]
    assert len(kernels) == search.config.num_layers + 2  # the child's: one op per layer
    want = sum(l2[group(layer, w)] * float(np.sum(np.square(w.numpy().astype(np.float64))))
               for layer, w in kernels)
    got = float(sum(model.losses))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got > 0
    search.close()


def test_weight_decay_per_tensor_is_searched_and_retrained(tmp_path, splits, monkeypatch):
    """A per-tensor IFT search: result.json holds one λ per decayed kernel of the supernet
    (the chosen medians), the response logs one entry per kernel, and the run's retrain
    adds exactly those L2 terms."""
    applied = []
    add_l2 = retrain.add_l2
    monkeypatch.setattr(retrain, "add_l2", lambda model, l2, per: (
        applied.append((l2, per)), add_l2(model, l2, per)))
    search = Search(joint_config(response="ift", curvature="gauss_newton", cg_iterations=20,
                                 cg_tol=0.5, weight_decay_per="tensor"),
                    str(tmp_path), splits=splits, verbose=0)
    saved = search.run()
    names = ["weight_decay_" + k.replace("/", ".") for k in PER_TENSOR_KEYS]
    chosen = saved["optimizer_hyperparameters"]
    l2 = saved["hyperparameters"]["l2_per_tensor"]
    assert l2 == {k: pytest.approx(chosen[n]) for k, n in zip(PER_TENSOR_KEYS, names)}
    assert saved["hyperparameters"]["weight_decay"] == 0.0
    assert all(f"dcoupling_dvalues_mean/{n}" in saved["response"] for n in names)
    assert applied == [(l2, "tensor")]


def test_a_new_estimator_plugs_into_the_loop(tmp_path, splits):
    """Neumann-series IFT in a few lines: a solver, no change to Search."""
    class NeumannIFT(response.Implicit):
        def __init__(self):
            super().__init__(hypergrad.make_solver("neumann", 30, tol=1e-3, damping=1.0,
                                                   alpha=0.5), lookahead_steps=1)

    search = Search(joint_config(response="ift"), str(tmp_path), splits=splits, verbose=0)
    search.phase.response = NeumannIFT()
    logs = search.controller_step(tf.constant(splits.x_val[:32]),
                                  tf.constant(splits.y_val[:32]))
    assert logs["response/computed"] == 1.0
    assert 1 <= float(logs["response/cg_iterations"]) <= 30
    assert float(logs["controller/reward"]) < 0  # −L_val
    assert int(search.controller.num_updates.numpy()) == 1


def test_unrolled_every_nth_step_is_the_continuous_decisions_only_signal(tmp_path, splits):
    """response_every=3 with the unrolled response: the steps between its response steps
    give the continuous decisions' heads exactly no gradient (no REINFORCE term for them),
    and a response step weights its pathwise term by 3."""
    config = joint_config(response="unrolled", response_every=3,
                          controller=ControllerConfig(lstm_size=8, entropy_weight=0.0))
    search = Search(config, str(tmp_path), splits=splits, verbose=0)
    update = search.phase.update_policy
    variables = search.controller.trainable_variables
    heads = [i for i, v in enumerate(variables)
             if v.name.startswith(("w_mu_", "w_sigma_", "b_sigma_"))]

    def recording(children, values, rewards, terms, weight):  # runs inside the traced step
        grads, _ = search.controller.gradients(children, values, rewards, response=terms,
                                               response_weight=weight)
        return update(children, values, rewards, terms, weight) | {
            "test/heads": tf.add_n([tf.reduce_sum(tf.abs(grads[i])) for i in heads]),
            "test/dloss": tf.reduce_sum(tf.abs(terms.dloss_dvalues)),
            "test/weight": tf.constant(weight, tf.float32),
            "test/score_continuous": tf.constant(float(terms.score_continuous))}

    search.phase.update_policy = recording
    x, y = tf.constant(splits.x_val[:32]), tf.constant(splits.y_val[:32])
    logs = [{k: float(v) for k, v in search.controller_step(x, y).items()
             if k.startswith(("test/", "response/computed"))} for _ in range(4)]
    assert [entry["response/computed"] for entry in logs] == [1.0, 0.0, 0.0, 1.0]
    assert [entry["test/weight"] for entry in logs] == [3.0] * 4
    assert [entry["test/score_continuous"] for entry in logs] == [0.0] * 4
    assert [entry["test/dloss"] > 0 for entry in logs] == [True, False, False, True]
    assert [entry["test/heads"] > 0 for entry in logs] == [True, False, False, True]
