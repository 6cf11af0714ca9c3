"""Controller: log-probs against a NumPy re-implementation and against enumeration;
sampling against the probabilities; REINFORCE on a bandit."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tf_enas.controller import Controller, ControllerConfig
from tf_enas.space import SearchSpace


def _log_softmax(z):
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def numpy_log_prob(ctrl, child):
    """Independent NumPy walk of the controller's policy (ENAS macro controller)."""
    v = {k: t.numpy() for k, t in {
        "k": ctrl.lstm_kernel, "b": ctrl.lstm_bias, "g": ctrl.g_emb}.items()}
    cfg, space = ctrl.config, ctrl.space
    n = cfg.lstm_size

    def lstm(x, h, c):
        z = np.concatenate([x, h]) @ v["k"] + v["b"]
        i, f, g, o = np.split(z, 4)
        sig = lambda a: 1 / (1 + np.exp(-a))
        c = sig(f + 1) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        return h, c

    def logits(raw):
        raw = raw / cfg.temperature
        return cfg.tanh_constant * np.tanh(raw) if cfg.tanh_constant else raw

    h, c = np.zeros(n), np.zeros(n)
    x = v["g"][0]
    total, anchors, anchors_w1 = 0.0, [], []
    for i in range(space.num_layers):
        h, c = lstm(x, h, c)
        op = child[space.op_index[i]]
        total += _log_softmax(logits(h @ ctrl.w_op.numpy()))[op]
        x = ctrl.op_emb.numpy()[op]
        h, c = lstm(x, h, c)
        if i > 0:
            skips = child[space.skip_index[i]]
            q = np.tanh(np.stack(anchors_w1) + h @ ctrl.w_attn_2.numpy())
            logit = (q @ ctrl.v_attn.numpy())[:, 0]
            for j, s in enumerate(skips):
                total += _log_softmax(logits(np.array([-logit[j], logit[j]])))[s]
            x = (skips[:, None] * np.stack(anchors)).sum(0) / (1 + skips.sum())
        else:
            x = v["g"][0]
        anchors.append(h)
        anchors_w1.append(h @ ctrl.w_attn_1.numpy())
    for k, (name, idx) in enumerate(space.choice_index.items()):
        h, c = lstm(x, h, c)
        a = child[idx]
        total += _log_softmax(logits(h @ ctrl.w_choice[k].numpy()))[a]
        x = ctrl.choice_emb[k].numpy()[a]
    return total


def small_space():
    return SearchSpace(3, ops=("conv3", "maxpool3"), choices={"lr": (0.1, 0.2, 0.3)})


def test_log_prob_matches_numpy_reimplementation():
    space = SearchSpace(4, choices={"lr": (0.01, 0.1), "wd": (0.0, 1e-4, 1e-3)})
    ctrl = Controller(space, ControllerConfig(lstm_size=16, temperature=2.0), seed=3)
    # larger weights so the distributions are far from uniform
    for var in ctrl.trainable_variables:
        var.assign(var * 20.0)
    children = ctrl.sample(6)[0].numpy()
    got = ctrl.log_prob(children).numpy()
    want = [numpy_log_prob(ctrl, c.astype(np.int64)) for c in children]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_probabilities_sum_to_one_by_enumeration_and_match_sampling():
    space = small_space()
    ctrl = Controller(space, ControllerConfig(lstm_size=8), seed=1)
    for var in ctrl.trainable_variables:
        var.assign(var * 15.0)
    children = np.array(list(itertools.product(*[range(d.num_values)
                                                 for d in space.decisions])), np.int32)
    p = np.exp(ctrl.log_prob(children).numpy())
    assert abs(p.sum() - 1.0) < 1e-4
    samples = ctrl.sample(20000)[0].numpy()
    index = {tuple(c): k for k, c in enumerate(children)}
    freq = np.bincount([index[tuple(c)] for c in samples], minlength=len(children)) / 20000
    # each frequency within 5 binomial standard errors of its probability
    se = np.sqrt(p * (1 - p) / 20000)
    assert np.all(np.abs(freq - p) <= 5 * se + 1e-3)
    # probabilities() of decision 0 is the marginal of the enumerated distribution
    p0 = ctrl.probabilities(0, children[:1])[0]
    np.testing.assert_allclose(p0, [p[children[:, 0] == v].sum() for v in range(2)], atol=1e-5)


def test_sampling_is_seeded_and_resumable_from_checkpoint(tmp_path):
    space = small_space()
    a, b = Controller(space, seed=7), Controller(space, seed=7)
    np.testing.assert_array_equal(a.sample(5)[0].numpy(), b.sample(5)[0].numpy())
    path = tf.train.Checkpoint(c=a).write(str(tmp_path / "ckpt"))
    expected = a.sample(5)[0].numpy()
    c = Controller(space, seed=99)
    tf.train.Checkpoint(c=c).read(path).assert_consumed()
    np.testing.assert_array_equal(c.sample(5)[0].numpy(), expected)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_reinforce_bandit_puts_mass_on_best_arm(sign):
    space = SearchSpace(0, choices={"arm": tuple(range(5))})
    # tanh_constant caps the logits (1.5 caps 5 arms at p ≤ 0.83), so it is off here
    ctrl = Controller(space, ControllerConfig(lstm_size=16, learning_rate=0.05,
                                              entropy_weight=0.0, tanh_constant=None), seed=0)
    rewards = sign * np.array([0.1, 0.3, 0.9, 0.5, 0.2], np.float32)
    best = int(np.argmax(rewards))
    for _ in range(150):
        arms, values = ctrl.sample(8)
        ctrl.update(arms, values, tf.gather(rewards, arms[:, 0]))
    assert ctrl.probabilities(0, np.zeros((1, 1), np.int32))[0, best] > 0.9


def test_mask_removes_decisions_from_the_gradient():
    space = SearchSpace(0, choices={"a": (0, 1), "b": (0, 1, 2)})
    ctrl = Controller(space, ControllerConfig(lstm_size=8, entropy_weight=0.1), seed=0)
    children, values = ctrl.sample(4)
    with tf.GradientTape() as tape:
        loss = ctrl.reinforce_loss(ctrl.walk(4, children, values), tf.ones(4),
                                   mask=[[1, 0]] * 4)
    grads = dict(zip([v.name for v in ctrl.trainable_variables],
                     tape.gradient(loss, ctrl.trainable_variables)))
    assert grads["w_b:0"] is None or np.all(grads["w_b:0"].numpy() == 0)
    assert np.any(grads["w_a:0"].numpy() != 0)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="temperature"):
        Controller(small_space(), ControllerConfig(temperature=0.0))
