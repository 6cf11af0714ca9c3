"""ChildObjective: the Gauss–Newton product against an explicit Jᵀ H_ℓ J built from the
Jacobian of the logits (tape.jacobian, not the product's forward mode), and its PSD-ness;
the lookahead against a hand-written heavy-ball step."""
import numpy as np
import pytest
import tensorflow as tf

from tf_enas import data, hypergrad
from tf_enas.search import Search
from tests.test_search_joint import joint_config


@pytest.fixture(scope="module", params=[
    dict(), dict(weight_decay_per="layer"),
    dict(weight_decay_per="tensor", ops=("conv3", "sepconv3"))],
    ids=["one_decay", "decay_per_layer", "decay_per_tensor"])
def search(tmp_path_factory, request):
    splits = data.load("mnist1d", seed=0, val_fraction=0.1, num_samples=600)
    s = Search(joint_config(width=2, **request.param),
               str(tmp_path_factory.mktemp("s")), splits=splits, verbose=0)
    yield s
    s.close()


def decay_per_weight(search, values) -> list:
    """λ of each trainable weight, read off the decisions by the weight's path (supernet/
    <group>/<op>/...): the one "weight_decay", "weight_decay_<group>" or
    "weight_decay_<group>.<op>.<...>.<kernel>"; 0 for biases and batch-norm parameters."""
    names = [d.name for d in search.config.decisions()]
    per = search.config.weight_decay_per
    out = []
    for v in search.supernet.trainable_variables:
        parts = v.path.split("/")
        key = {"model": "weight_decay", "layer": f"weight_decay_{parts[1]}",
               "tensor": "weight_decay_" + ".".join(parts[1:])}[per]
        kernel = parts[-1] in ("kernel", "depthwise_kernel", "pointwise_kernel")
        out.append(float(values[names.index(key)]) if kernel else 0.0)
    return out


def test_training_loss_decays_each_kernel_by_its_own_rate(search):
    obj = search.shared.objective
    params = obj.weights()
    children, values = search.controller.sample(1)
    x, y = tf.constant(search.splits.x_train[:8]), tf.constant(search.splits.y_train[:8])
    got = (obj.train_loss(params, children[0], values[0], x, y)
           - obj.val_loss(params, children[0], x, y))
    lam = decay_per_weight(search, values[0].numpy())
    want = sum(l * float(np.sum(np.square(p.numpy(), dtype=np.float64)))
               for l, p in zip(lam, params))
    assert sum(l > 0 for l in lam) >= 3
    np.testing.assert_allclose(float(got), want, rtol=1e-4)
    groups = {"model": 1, "layer": search.config.num_layers + 2,
              "tensor": len(search.config.decisions()) - 2}[search.config.weight_decay_per]
    assert len(set(l for l in lam if l > 0)) == groups


def _explicit_gauss_newton(search, params, child, vals, x):
    """Jᵀ H_ℓ J + 2λ I of one child, float64, J from tape.jacobian."""
    obj = search.shared.objective
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(params)
        logits = obj.logits(params, child, x)                      # [N, K]
    n, k = logits.shape
    jac = np.concatenate([np.reshape(j.numpy(), (n * k, -1)) for j in tape.jacobian(
        logits, params, unconnected_gradients="zero")], 1).astype(np.float64)  # one trace
    prob = tf.nn.softmax(logits).numpy().astype(np.float64)
    h = np.zeros((n * k, n * k))
    for i in range(n):
        h[i * k:(i + 1) * k, i * k:(i + 1) * k] = (np.diag(prob[i])
                                                   - np.outer(prob[i], prob[i])) / n
    sizes = [int(np.prod(p.shape)) for p in params]
    decay = np.concatenate([np.full(m, 2 * lam) for m, lam in
                            zip(sizes, decay_per_weight(search, vals.numpy()))])
    return jac.T @ h @ jac + np.diag(decay)


@pytest.mark.parametrize("jvp", ["reverse", "central_difference"])
def test_gauss_newton_operator_matches_explicit_matrix(search, jvp):
    """Both ways of taking J v give the mean over children of Jᵀ H_ℓ J v + 2λ⊙v: two
    reverse passes to rounding, the central difference to 2% in norm (ReLU kinks and
    float32 rounding: 0.3–0.75% here); the operator applies twice from one taped forward."""
    obj = search.shared.objective
    params = obj.weights()
    children, values = search.controller.sample(2)
    x = tf.constant(search.splits.x_train[:6])
    g = np.mean([_explicit_gauss_newton(search, params, children[i], values[i], x)
                 for i in range(2)], 0)
    product = obj.gauss_newton_operator(params, children, values, x, jvp=jvp)
    rng = np.random.default_rng(0)
    for _ in range(2):
        v = rng.normal(size=g.shape[0]).astype(np.float32)
        got = product(tf.constant(v)).numpy()
        if jvp == "reverse":
            np.testing.assert_allclose(got, g @ v, rtol=1e-3, atol=1e-6 * np.abs(g @ v).max())
        else:
            assert np.linalg.norm(got - g @ v) <= 2e-2 * np.linalg.norm(g @ v)
        assert float(v @ got) >= 0


def test_lookahead_is_heavy_ball_from_the_shared_velocity(search):
    obj = search.shared.objective
    params, velocity = search.shared.state()
    velocity = [tf.ones_like(v) * 0.01 for v in velocity]
    children, values = search.controller.sample(1)
    child, vals = children[0], values[0]
    x, y = tf.constant(search.splits.x_train[:16]), tf.constant(search.splits.y_train[:16])
    got = obj.lookahead(params, velocity, child, vals, x, y, steps=2)
    lr, mom = vals.numpy()[:2]
    lr *= float(search.shared.lr_scale())
    w, v = params, velocity
    for _ in range(2):
        g = hypergrad.gradient(lambda p: obj.train_loss(p, child, vals, x, y), w)[1]
        v = [mom * vi + gi for vi, gi in zip(v, g)]
        w = [wi - lr * vi for wi, vi in zip(w, v)]
    for a, b in zip(got, w):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
