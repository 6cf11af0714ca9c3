"""JointController: the categorical part is the base controller's, the continuous part is
Normal on the z scale with reparameterized samples, and its gradient plumbing (score function
through the discrete decisions, pathwise through the continuous ones) is unbiased against a
closed form of J(φ) = Σ_a π_φ(a) E_z f(a, e^z)."""
import numpy as np
import pytest
import tensorflow as tf

from tf_enas.controller import Controller, ControllerConfig
from tf_enas.controller import ResponseTerms
from tf_enas.joint_controller import DEFAULTS, ContinuousDecision, JointController
from tf_enas.space import SearchSpace

TARGETS = np.array([0.01, 0.05, 0.2], np.float32)


def _controller(space=None, continuous=("learning_rate", "momentum", "weight_decay")):
    space = space or SearchSpace(2, ("conv3", "conv5", "maxpool3"), {"batch": (32, 64)})
    return JointController(space, [DEFAULTS[k] for k in continuous],
                           ControllerConfig(lstm_size=8), seed=3)


def test_sample_shapes_and_discrete_part_is_the_base_controller():
    ctrl = _controller()
    children, values = ctrl.sample(16)
    assert children.dtype == tf.int32 and children.shape == (16, len(ctrl.space))
    assert values.dtype == tf.float32 and values.shape == (16, 3)
    assert np.all(values.numpy() > 0) and np.all(values[:, 1].numpy() < 1)
    parts = ctrl.walk(16, children, values)
    # a plain Controller with the same seed holds the same categorical variables
    plain = Controller(ctrl.space, ctrl.config, seed=3)
    base = plain.log_prob(children)
    np.testing.assert_allclose(tf.reduce_sum(parts.discrete_log_prob, 1).numpy(), base.numpy(),
                               rtol=1e-5)
    # continuous log-density: Normal(μ, σ) of z = T⁻¹(h), recomputed by hand
    z = np.stack([np.log(values[:, 0]), np.log(values[:, 1] / (1 - values[:, 1])),
                  np.log(values[:, 2])], 1)
    mu, sd = parts.loc.numpy(), parts.scale.numpy()
    want = np.sum(-0.5 * ((z - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi), 1)
    np.testing.assert_allclose(parts.continuous_log_prob.numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ctrl.log_prob(children, values).numpy(),
                               base.numpy() + want, rtol=1e-4, atol=1e-4)
    # pathwise walk reproduces the values
    np.testing.assert_allclose(ctrl.walk(16, children, values, pathwise=True).values.numpy(),
                               values.numpy(), rtol=1e-5)


def test_samples_follow_the_emitted_distribution():
    space = SearchSpace(0, choices={"arch": (0, 1, 2)})
    ctrl = _controller(space, ("learning_rate",))
    children, values = ctrl.sample(4000)
    parts = ctrl.walk(4000, children, values)
    eps = (np.log(values.numpy()[:, 0]) - parts.loc.numpy()[:, 0]) / parts.scale.numpy()[:, 0]
    assert abs(eps.mean()) < 4 / np.sqrt(4000) and abs(eps.std() - 1) < 0.05
    p = np.exp(np.stack([ctrl.walk(1, tf.constant([[a]]), values[:1]).discrete_log_prob[0, 0]
                         for a in range(3)]))
    freq = np.bincount(children.numpy()[:, 0], minlength=3) / 4000
    np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(0.25 / 4000))


def test_bad_continuous_decisions_are_rejected():
    with pytest.raises(ValueError, match="low < high"):
        ContinuousDecision("learning_rate", 0.1, 0.01).validate()
    with pytest.raises(ValueError, match="< 1"):
        ContinuousDecision("momentum", 0.5, 1.5, "logit").validate()
    space = SearchSpace(0, choices={"learning_rate": (0.1, 0.2)})
    with pytest.raises(ValueError, match="unique names"):
        JointController(space, [DEFAULTS["learning_rate"]])


def _exact_grad(ctrl):
    """∇_φ Σ_a π(a) E[(e^z − t_a)²], z ~ N(μ_a, σ_a²): E e^z = e^{μ+σ²/2}, E e^{2z} = e^{2μ+2σ²}."""
    children = tf.constant([[0], [1], [2]], tf.int32)
    with tf.GradientTape() as tape:
        parts = ctrl.walk(3, children, tf.ones((3, 1)) * 0.05)
        mu, s2 = parts.loc[:, 0], parts.scale[:, 0] ** 2
        j_a = tf.exp(2 * mu + 2 * s2) - 2 * TARGETS * tf.exp(mu + s2 / 2) + TARGETS ** 2
        j = tf.reduce_sum(tf.exp(parts.discrete_log_prob[:, 0]) * j_a)
    return tape.gradient(j, ctrl.trainable_variables)


def _flat(grads, variables):
    return tf.concat([tf.reshape(tf.zeros_like(v) if g is None else tf.convert_to_tensor(g),
                                 [-1]) for g, v in zip(grads, variables)], 0).numpy()


@pytest.mark.parametrize("estimator", ["pathwise", "score"])
def test_real_controller_gradient_plumbing_is_unbiased(estimator):
    """40 groups × 100 samples; mean of group gradients vs the exact gradient, projected on
    4 fixed random directions (each within 3 standard errors)."""
    space = SearchSpace(0, choices={"arch": (0, 1, 2)})
    ctrl = _controller(space, ("learning_rate",))
    variables = ctrl.trainable_variables
    exact = _flat(_exact_grad(ctrl), variables)
    groups, per = 40, 100

    @tf.function
    def group_grad():
        children, values = ctrl.sample(per)
        t = tf.gather(TARGETS, children[:, 0])
        f = (values[:, 0] - t) ** 2
        with tf.GradientTape() as tape:
            # the controller's own update terms, with the baseline at 0: R = −f
            walk = ctrl.walk(per, children, values, pathwise=True)
            if estimator == "pathwise":
                terms = ResponseTerms(tf.zeros(per), (2 * (values[:, 0] - t))[:, None], False)
                s = ctrl.reinforce_loss(walk, -f, score_continuous=False) + terms.surrogate(walk)
            else:
                s = ctrl.reinforce_loss(walk, -f)
        return tape.gradient(s, variables)

    est = np.stack([_flat(group_grad(), variables) for _ in range(groups)])
    dirs = np.random.default_rng(0).normal(size=(4, exact.size))
    proj = est @ dirs.T
    se = proj.std(0, ddof=1) / np.sqrt(groups)
    z = (proj.mean(0) - dirs @ exact) / se
    assert np.all(np.abs(z) < 3), z
    assert np.linalg.norm(exact) > 1e-4
