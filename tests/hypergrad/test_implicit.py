"""implicit_hypergradient against closed forms (ridge) and finite differences (logistic
regression on scikit-learn digits, inner problem solved by Newton's method in numpy)."""
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from tf_enas.hypergrad import implicit_hypergradient, inverse_hvp, make_solver, root_vjp


def rel_err(a, b):
    return np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b))


# ---------------------------------------------------------------- ridge regression
# L_train(w, lam) = |X w - y|^2 / (2n) + sum_j lam_j w_j^2 / 2,  L_val(w) = |V w - z|^2 / (2m)
# w*(lam) = A^{-1} X^T y / n with A = X^T X / n + diag(lam), and
# dL_val/dlam_j = -w*_j [A^{-1} V^T (V w* - z) / m]_j   (closed form, numpy).

def ridge_problem(seed=0, n=40, m=30, d=6):
    rng = np.random.default_rng(seed)
    x, v = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    w_true = rng.normal(size=d)
    y = x @ w_true + 0.3 * rng.normal(size=n)
    z = v @ w_true + 0.3 * rng.normal(size=m)
    return x, y, v, z


def ridge_closed_form(x, y, v, z, lam):
    n, m, d = len(x), len(v), x.shape[1]
    a = x.T @ x / n + np.diag(np.broadcast_to(lam, (d,)))
    w = np.linalg.solve(a, x.T @ y / n)
    per_feature = -w * np.linalg.solve(a, v.T @ (v @ w - z) / m)
    return w, a, (per_feature.sum() if np.ndim(lam) == 0 else per_feature)


def ridge_losses(x, y, v, z, dtype, direct=0.0):
    x, y, v, z = (tf.constant(t, dtype) for t in (x, y, v, z))

    def train_loss(params, hparams):
        r = tf.linalg.matvec(x, params[0]) - y
        return tf.reduce_mean(r ** 2) / 2 + tf.reduce_sum(hparams[0] * params[0] ** 2) / 2

    def val_loss(params, hparams):
        r = tf.linalg.matvec(v, params[0]) - z
        # `direct` adds a term with a direct dependence on lambda: + direct * |lam|^2 / 2.
        return tf.reduce_mean(r ** 2) / 2 + direct * tf.reduce_sum(hparams[0] ** 2) / 2

    return train_loss, val_loss


@pytest.mark.parametrize("dtype,tol", [(tf.float64, 1e-6), (tf.float32, 1e-3)])
@pytest.mark.parametrize("method", ["cg", "exact"])
@pytest.mark.parametrize("vector", [False, True], ids=["scalar_l2", "per_feature_l2"])
def test_ridge_closed_form(dtype, tol, method, vector):
    x, y, v, z = ridge_problem()
    lam = np.array([0.05, 0.1, 0.2, 0.4, 0.8, 1.6]) if vector else np.array(0.3)
    direct = 0.7 if vector else 0.0
    w_star, _, reference = ridge_closed_form(x, y, v, z, lam)
    reference = reference + direct * lam
    train_loss, val_loss = ridge_losses(x, y, v, z, dtype, direct)
    fn = tf.function(lambda p, h: implicit_hypergradient(
        train_loss, val_loss, p, h, method=method, iterations=50,
        tol=1e-12 if dtype == tf.float64 else 1e-6))
    (grad,), info = fn([tf.constant(w_star, dtype)], [tf.constant(lam, dtype)])
    err = rel_err(grad.numpy(), reference)
    print(f"ridge {method} {'vector' if vector else 'scalar'} {dtype.name}: rel err {err:.2e}")
    assert err <= tol
    assert not bool(info.negative_curvature) and not bool(info.diverged)
    if dtype == tf.float64:
        assert bool(info.converged)


@pytest.mark.parametrize("method", ["cg", "neumann", "exact"])
def test_ridge_under_xla_jit_compile_with_variables(method):
    x, y, v, z = ridge_problem()
    lam = np.array([0.05, 0.1, 0.2, 0.4, 0.8, 1.6])
    w_star, a, reference = ridge_closed_form(x, y, v, z, lam)
    train_loss, val_loss = ridge_losses(x, y, v, z, tf.float64)
    params, hparams = [tf.Variable(w_star)], [tf.Variable(lam)]
    alpha = 1.0 / np.linalg.eigvalsh(a).max()
    fn = tf.function(lambda: implicit_hypergradient(
        train_loss, val_loss, params, hparams, method=method, iterations=300, tol=1e-12,
        alpha=alpha), jit_compile=True)
    (grad,), info = fn()
    assert rel_err(grad.numpy(), reference) <= 1e-6 and bool(info.converged)


def test_ridge_neumann_converges_below_two_over_lambda_max_and_reports_divergence_above():
    x, y, v, z = ridge_problem()
    lam = np.array([0.05, 0.1, 0.2, 0.4, 0.8, 1.6])
    w_star, a, reference = ridge_closed_form(x, y, v, z, lam)
    lam_max = np.linalg.eigvalsh(a).max()
    train_loss, val_loss = ridge_losses(x, y, v, z, tf.float64)
    fn = tf.function(lambda p, h, alpha: implicit_hypergradient(
        train_loss, val_loss, p, h, method="neumann", iterations=400, alpha=alpha, tol=1e-12))
    args = ([tf.constant(w_star)], [tf.constant(lam)])
    (grad,), info = fn(*args, tf.constant(1.0 / lam_max, tf.float64))
    err = rel_err(grad.numpy(), reference)
    print(f"ridge neumann alpha=1/lmax: rel err {err:.2e}, {int(info.iterations)} iterations")
    assert err <= 1e-6 and bool(info.converged) and not bool(info.diverged)
    (grad,), info = fn(*args, tf.constant(2.1 / lam_max, tf.float64))
    assert bool(info.diverged) and not bool(info.converged)


def test_inverse_hvp_and_root_vjp_match_closed_form():
    x, y, v, z = ridge_problem()
    lam = np.array([0.05, 0.1, 0.2, 0.4, 0.8, 1.6])
    w_star, a, _ = ridge_closed_form(x, y, v, z, lam)
    train_loss, _ = ridge_losses(x, y, v, z, tf.float64)
    b = np.arange(1.0, 7.0)
    (u,), info = inverse_hvp(train_loss, [tf.constant(w_star)], [tf.constant(lam)],
                             [tf.constant(b)], iterations=50, tol=1e-13, damping=0.5)
    assert rel_err(u.numpy(), np.linalg.solve(a + 0.5 * np.eye(6), b)) <= 1e-10
    # root_vjp with a generic (non-gradient) optimality condition F(w, lam) = A(lam) w - c = 0:
    # (dw*/dlam)^T c' = -(dF/dlam)^T A^{-T} c' = -w* * (A^{-1} c').
    c = x.T @ y / len(x)

    def optimality(params, hparams):
        a_lam = tf.constant(x.T @ x / len(x)) + tf.linalg.diag(hparams[0])
        return [tf.linalg.matvec(a_lam, params[0]) - tf.constant(c)]

    (g,), _, _ = root_vjp(optimality, [tf.constant(w_star)], [tf.constant(lam)],
                          [tf.constant(b)], make_solver("exact"))
    assert rel_err(g.numpy(), -w_star * np.linalg.solve(a, b)) <= 1e-10


def test_hyperparameter_unused_by_both_losses_gets_zero():
    x, y, v, z = ridge_problem()
    w_star, _, reference = ridge_closed_form(x, y, v, z, np.array(0.3))
    train_loss, val_loss = ridge_losses(x, y, v, z, tf.float64)
    (g, unused), _ = implicit_hypergradient(
        train_loss, val_loss, [tf.constant(w_star)],
        [tf.constant(0.3, tf.float64), tf.constant([1.0, 2.0], tf.float64)], method="exact")
    assert rel_err(g.numpy(), reference) <= 1e-10
    np.testing.assert_array_equal(unused.numpy(), [0.0, 0.0])


def test_bad_method_and_missing_alpha_raise():
    x, y, v, z = ridge_problem()
    train_loss, val_loss = ridge_losses(x, y, v, z, tf.float64)
    args = (train_loss, val_loss, [tf.zeros(6, tf.float64)], [tf.constant(0.3, tf.float64)])
    with pytest.raises(ValueError, match="method"):
        implicit_hypergradient(*args, method="lbfgs")
    with pytest.raises(ValueError, match="alpha"):
        implicit_hypergradient(*args, method="neumann")


# ------------------------------------------- logistic regression on scikit-learn digits
# L_train(w, b; rho) = mean log-loss + sum_j exp(rho_j) w_j^2 / 2 (bias not penalized).

def digits_problem():
    data = load_digits()
    keep = (data.target == 3) | (data.target == 8)
    x = data.data[keep][:240] / 16.0
    t = (data.target[keep][:240] == 8).astype(np.float64)
    return x[:120], t[:120], x[120:], t[120:]


def newton_logistic(x, t, l2, iters=50):
    """Inner problem solved tightly (Newton with exact Hessian, numpy): returns (w, b)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.append(l2, 0.0)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-xb @ theta))
        g = xb.T @ (p - t) / n + reg * theta
        if np.linalg.norm(g) < 1e-15:
            break
        h = xb.T @ (xb * (p * (1 - p))[:, None]) / n + np.diag(reg)
        theta -= np.linalg.solve(h, g)
    return theta[:d], theta[d]


def val_logloss(x, t, w, b):
    z = x @ w + b
    return np.mean(np.logaddexp(0, z) - t * z)


def digits_losses(x, t, xv, tv):
    x, t, xv, tv = (tf.constant(a) for a in (x, t, xv, tv))

    def logloss(xx, tt, params):
        z = tf.linalg.matvec(xx, params[0]) + params[1]
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tt, z))

    def train_loss(params, hparams):
        return logloss(x, t, params) + tf.reduce_sum(tf.exp(hparams[0]) * params[0] ** 2) / 2

    return train_loss, lambda params, hparams: logloss(xv, tv, params)


@pytest.mark.parametrize("method", ["cg", "exact"])
def test_logistic_regression_digits_matches_finite_differences(method):
    x, t, xv, tv = digits_problem()
    train_loss, val_loss = digits_losses(x, t, xv, tv)
    rng = np.random.default_rng(0)
    rho = np.log(0.01) + 0.5 * rng.normal(size=64)  # per-pixel log L2 strengths
    w, b = newton_logistic(x, t, np.exp(rho))
    fn = tf.function(lambda p, h: implicit_hypergradient(
        train_loss, val_loss, p, h, method=method, iterations=300, tol=1e-12))
    (grad,), info = fn([tf.constant(w), tf.constant(b)], [tf.constant(rho)])
    assert bool(info.converged) and not bool(info.negative_curvature)
    # Central differences of the tightly solved inner problem, on 6 coordinates with the
    # largest hypergradients and on the all-ones direction (a shared scalar log-L2).
    h = 1e-4
    coords = np.argsort(-np.abs(grad.numpy()))[:6]
    directions = [np.eye(64)[j] for j in coords] + [np.ones(64)]
    fd = np.array([(val_logloss(xv, tv, *newton_logistic(x, t, np.exp(rho + h * e)))
                    - val_logloss(xv, tv, *newton_logistic(x, t, np.exp(rho - h * e)))) / (2 * h)
                   for e in directions])
    got = np.array([grad.numpy() @ e for e in directions])
    err = np.max(np.abs(got - fd) / np.abs(fd))
    print(f"digits logistic {method}: max rel err vs central FD {err:.2e}")
    assert err <= 1e-3
