"""Response-gradient estimators against exact controller gradients (enumeration, closed
forms, Gauss–Hermite quadrature): the mean of 2,000 estimates lies within 3 standard errors
of the exact dJ/dφ in every coordinate; REINFORCE alone does not when the response is real."""
import numpy as np
import pytest
import tensorflow as tf

from tf_enas import hypergrad, response
from tf_enas.controller import PolicyWalk, ResponseTerms

F64 = tf.float64
NUM_ESTIMATES = 2000


def reinforce_surrogate(log_prob, losses):
    """∇_φ S = (1/B) Σ_i (L_i − b_i) ∇_φ log π_φ(λ_i), b the leave-one-out mean."""
    losses = tf.stop_gradient(losses)
    return tf.reduce_mean((losses - response.leave_one_out_mean(losses)) * log_prob)


def terms_surrogate(score_weights, dloss_dvalues, log_prob, values):
    """The controller update's own response surrogate (ResponseTerms.surrogate)."""
    zero = tf.zeros_like(log_prob)
    walk = PolicyWalk(None, values, log_prob[:, None], zero, None, None, zero, None, None)
    return ResponseTerms(score_weights, dloss_dvalues, True).surrogate(walk)


def _z_scores(estimates, exact):
    est = np.asarray(estimates)
    se = est.std(0, ddof=1) / np.sqrt(len(est))
    return (est.mean(0) - np.asarray(exact)) / se


# --- toy 1: linear supernet, 3 discrete ops, quadratic losses (IFT) ------------------------
class LinearToy:
    """f(x; a, w) = xᵀw + β_a;  L(a, w) = ½ mean (f − y)² (+ ½ρ‖w‖² on train);  π = softmax(φ).

    E_π L_train is minimized by w*(φ) = (XᵀX/n + ρI)⁻¹ Xᵀ(y − Σ_a π_a β_a)/n, so
    J(φ) = Σ_a π_a L_val(a, w*(φ)) and dJ/dφ are exact.
    """

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        p, n_tr, n_va = 3, 24, 16
        ones = lambda n: np.ones((n, 1))
        self.x_tr = tf.constant(np.hstack([ones(n_tr), rng.normal(size=(n_tr, p - 1))]))
        self.x_va = tf.constant(np.hstack([ones(n_va), rng.normal(size=(n_va, p - 1))]))
        self.y_tr = tf.constant(rng.normal(size=n_tr))
        self.y_va = tf.constant(rng.normal(size=n_va) + 0.5)
        self.beta = tf.constant([0.0, 1.5, -1.0], F64)
        self.rho = 0.1
        self.phi = tf.constant([0.3, -0.2, 0.1], F64)
        self.p = p

    def train_loss(self, a, w):
        r = tf.linalg.matvec(self.x_tr, w) + tf.gather(self.beta, a) - self.y_tr
        return 0.5 * tf.reduce_mean(r ** 2) + 0.5 * self.rho * tf.reduce_sum(w ** 2)

    def val_loss(self, a, w):
        r = tf.linalg.matvec(self.x_va, w) + tf.gather(self.beta, a) - self.y_va
        return 0.5 * tf.reduce_mean(r ** 2)

    def w_star(self, phi):
        n = tf.cast(tf.shape(self.x_tr)[0], F64)
        q = tf.transpose(self.x_tr) @ self.x_tr / n + self.rho * tf.eye(self.p, dtype=F64)
        beta_bar = tf.reduce_sum(tf.nn.softmax(phi) * self.beta)
        rhs = tf.linalg.matvec(self.x_tr, self.y_tr - beta_bar, transpose_a=True) / n
        return tf.linalg.solve(q, rhs[:, None])[:, 0]

    def exact_grad(self):
        phi = tf.Variable(self.phi)
        with tf.GradientTape() as tape:
            w = self.w_star(phi)
            j = tf.reduce_sum(tf.nn.softmax(phi) * tf.stack(
                [self.val_loss(a, w) for a in range(3)]))
        return tape.gradient(j, phi).numpy()


def _ift_estimates(toy, batch, with_response):
    """NUM_ESTIMATES controller-gradient estimates, each from `batch` sampled children."""
    w = toy.w_star(toy.phi)

    def one(seed):
        a = tf.random.stateless_categorical(toy.phi[None], batch, seed)[0]
        losses = tf.map_fn(lambda ai: toy.val_loss(ai, w), a, fn_output_signature=F64)

        def solve(idx):
            ai = tf.gather(a, idx)
            with tf.GradientTape() as tape:
                tape.watch(w)
                lv = tf.reduce_mean(tf.map_fn(lambda k: toy.val_loss(k, w), ai,
                                              fn_output_signature=F64))
            rhs = tape.gradient(lv, w)
            train = lambda p: tf.reduce_mean(tf.map_fn(lambda k: toy.train_loss(k, p[0]), ai,
                                                       fn_output_signature=F64))
            return hypergrad.inverse_hvp(lambda p, h: train(p), [w], [], [rhs],
                                         iterations=toy.p, tol=1e-12)

        def couple(u, idx):
            return tf.map_fn(
                lambda k: response.ift_coupling(lambda p, h: toy.train_loss(k, p[0]), [w],
                                                u[0], tf.zeros([0], F64)),
                tf.gather(a, idx), fn_output_signature=(F64, tf.TensorSpec([0], F64)))

        phi = toy.phi
        with tf.GradientTape() as tape:
            tape.watch(phi)
            log_prob = tf.gather(tf.nn.log_softmax(phi), a)
            s = reinforce_surrogate(log_prob, losses)
            if with_response:  # the implicit estimator's terms: −(c − b), −∂c/∂h
                c, dc, b, _ = response.ift_cross_fit(solve, couple, batch)
                s += terms_surrogate(-(c - b), -dc, log_prob, tf.zeros([batch, 0], F64))
        return tape.gradient(s, phi)

    seeds = tf.random.stateless_uniform([NUM_ESTIMATES, 2], [1, 2], maxval=2**30,
                                        dtype=tf.int32)
    return tf.function(lambda: tf.map_fn(one, seeds, fn_output_signature=F64))().numpy()


def test_ift_solve_matches_dense_solution():
    toy = LinearToy()
    w = toy.w_star(toy.phi)
    rhs = tf.constant([1.0, -2.0, 0.5], F64)
    u, info = hypergrad.inverse_hvp(lambda p, h: toy.train_loss(1, p[0]), [w], [], [rhs],
                                    iterations=3, tol=1e-12)
    n = toy.x_tr.shape[0]
    q = toy.x_tr.numpy().T @ toy.x_tr.numpy() / n + toy.rho * np.eye(3)
    np.testing.assert_allclose(u[0].numpy(), np.linalg.solve(q, rhs.numpy()), rtol=1e-8)
    assert bool(info.converged) and not bool(info.negative_curvature)


def test_reinforce_plus_ift_is_unbiased_and_reinforce_alone_is_not():
    toy = LinearToy()
    exact = toy.exact_grad()
    with_ift = _ift_estimates(toy, batch=4, with_response=True)
    alone = _ift_estimates(toy, batch=4, with_response=False)
    z_ift, z_alone = _z_scores(with_ift, exact), _z_scores(alone, exact)
    assert np.all(np.abs(z_ift) < 3), (z_ift, with_ift.mean(0), exact)
    assert np.max(np.abs(z_alone)) > 3, (z_alone, alone.mean(0), exact)


def unrolled(train_loss, val_loss, params, h, steps, learning_rate, momentum):
    """(∂L_val(w_K)/∂h, L_val(w_K)) by hypergrad's reverse-mode heavy-ball unroll."""
    grads, final = hypergrad.unrolled_hypergradient(
        lambda p, hp, t: train_loss(p, hp[0], t), lambda p, hp: val_loss(p, hp[0]),
        params, [h], steps, optimizer="momentum", learning_rate=learning_rate,
        momentum=momentum)
    return grads[0], val_loss(final, h)


# --- toy 2: quadratic, discrete target + continuous learning rate (unrolled) ----------------
K_STEPS, MOMENTUM = 3, 0.5
A_MAT = np.array([[1.5, 0.3], [0.3, 0.6]])
TARGETS = np.array([[1.0, -1.0], [-0.5, 2.0]])
W0 = np.array([0.2, 0.1])
V_VAL = np.array([0.4, 0.3])
PHI2 = np.array([0.2, -0.3, np.log(0.3), np.log(0.5), np.log(0.4)])  # logits, μ_0, μ_1, log σ


def _toy2_policy(phi, a, eps):
    """log π(a) and lr = exp(μ_a + σ ε) for the tiny policy of toy 2."""
    log_prob = tf.gather(tf.nn.log_softmax(phi[:2]), a)
    lr = tf.exp(tf.gather(phi[2:4], a) + tf.exp(phi[4]) * eps)
    return log_prob, lr


def _toy2_train(a):
    a_mat, t = tf.constant(A_MAT), tf.gather(tf.constant(TARGETS), a)
    return lambda p, h, step: 0.5 * tf.reduce_sum((p[0] - t) * tf.linalg.matvec(a_mat, p[0] - t))


def _toy2_val(p, h):
    return 0.5 * tf.reduce_sum((p[0] - V_VAL) ** 2)


def _toy2_exact_grad():
    """dJ/dφ of J = Σ_a π_a E_z L_val(w_K(a, e^z)) by enumeration and 80-node Gauss–Hermite;
    w_K by an explicit heavy-ball recursion (not the hypergrad code)."""
    x, wts = np.polynomial.hermite.hermgauss(80)
    phi = tf.Variable(PHI2)

    def w_k(a, lr):  # lr: [Q] → w_K [Q, 2]
        w = tf.tile(tf.constant(W0)[None], [len(x), 1])
        v = tf.zeros_like(w)
        for _ in range(K_STEPS):
            g = (w - TARGETS[a]) @ A_MAT
            v = MOMENTUM * v + g
            w = w - lr[:, None] * v
        return w

    with tf.GradientTape() as tape:
        j = 0.0
        for a in range(2):
            lr = tf.exp(phi[2 + a] + tf.exp(phi[4]) * np.sqrt(2.0) * x)
            val = 0.5 * tf.reduce_sum((w_k(a, lr) - V_VAL) ** 2, 1)
            j += tf.nn.softmax(phi[:2])[a] * tf.reduce_sum(wts * val) / np.sqrt(np.pi)
    return tape.gradient(j, phi).numpy()


def _unrolled_estimates(batch):
    phi = tf.constant(PHI2)
    w0 = tf.constant(W0)

    def one(seed):
        a = tf.random.stateless_categorical(phi[None, :2], batch, seed)[0]
        eps = tf.random.stateless_normal([batch], seed + 7, dtype=F64)
        _, lr = _toy2_policy(phi, a, eps)

        def child(args):
            ai, lri = args
            return unrolled(_toy2_train(ai), _toy2_val, [w0], lri[None], K_STEPS,
                            learning_rate=lambda hp: hp[0][0], momentum=MOMENTUM)

        dldh, losses = tf.map_fn(child, (a, lr), fn_output_signature=(
            tf.TensorSpec([1], F64), F64))
        with tf.GradientTape() as tape:
            tape.watch(phi)
            log_prob, lr_path = _toy2_policy(phi, a, eps)
            s = (reinforce_surrogate(log_prob, losses)
                 + terms_surrogate(tf.zeros_like(losses), dldh, log_prob * 0, lr_path[:, None]))
        return tape.gradient(s, phi)

    seeds = tf.random.stateless_uniform([NUM_ESTIMATES, 2], [3, 4], maxval=2**30,
                                        dtype=tf.int32)
    return tf.function(lambda: tf.map_fn(one, seeds, fn_output_signature=F64))().numpy()


def test_unrolled_estimator_is_unbiased_for_learning_rate():
    exact = _toy2_exact_grad()
    est = _unrolled_estimates(batch=4)
    z = _z_scores(est, exact)
    assert np.all(np.abs(z) < 3), (z, est.mean(0), exact)
    assert np.all(np.abs(exact[2:]) > 1e-3)  # the learning-rate coordinates are not trivial


def test_learning_rate_gets_zero_ift_response_and_nonzero_unrolled():
    """c(h) = uᵀ∇_w L_train(w, h) reads weight decay only: ∂c/∂(lr, momentum) ≡ 0."""
    w = [tf.constant([0.3, -0.7], F64)]
    u = [tf.constant([1.0, 2.0], F64)]
    h = tf.constant([0.1, 0.9, 0.01], F64)  # learning_rate, momentum, weight_decay

    def train(p, hp, step=0):
        return _toy2_train(0)(p, hp, step) + hp[2] * tf.reduce_sum(p[0] ** 2)

    c, dc = response.ift_coupling(lambda p, hp: train(p, hp), w, u[0], h)
    assert dc[0].numpy() == 0.0 and dc[1].numpy() == 0.0
    np.testing.assert_allclose(dc[2].numpy(), 2 * np.dot(u[0], w[0]), rtol=1e-12)
    dldh, _ = unrolled(
        lambda p, hp, t: train(p, hp, t), _toy2_val, w, h, 2,
        learning_rate=lambda hp: hp[0][0], momentum=lambda hp: hp[0][1])
    assert abs(dldh[0].numpy()) > 1e-3 and abs(dldh[1].numpy()) > 1e-4
    # and against central finite differences in the learning rate
    def val_after(lr):
        hh = tf.tensor_scatter_nd_update(h, [[0]], [lr])
        _, v = unrolled(
            lambda p, hp, t: train(p, hp, t), _toy2_val, w, hh, 2,
            learning_rate=lambda hp: hp[0][0], momentum=lambda hp: hp[0][1])
        return v.numpy()
    fd = (val_after(0.1 + 1e-6) - val_after(0.1 - 1e-6)) / 2e-6
    np.testing.assert_allclose(dldh[0].numpy(), fd, rtol=1e-5)


def test_cross_fit_rejects_small_batches():
    with pytest.raises(ValueError, match="at least 4"):
        response.ift_cross_fit(None, None, 3)
