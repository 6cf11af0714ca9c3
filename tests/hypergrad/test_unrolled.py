"""unrolled_hypergradient / forward_hypergradient against closed forms and finite differences.

Gradient descent on a quadratic, w_{t+1} = w_t - eta ((A + lam I) w_t - b), has the closed
form (eigenbasis of A, a_i its eigenvalues, m_i = 1 - eta (a_i + lam), beta_i = b_i/(a_i+lam))
    c_K = beta + m^K (c_0 - beta),
    dc_K/dlam        = -eta K m^{K-1} (c_0 - beta) - (1 - m^K) beta / (a + lam),
    dc_K/dlog(eta)   = -eta (a + lam) K m^{K-1} (c_0 - beta),
and, backpropagating only through the last T steps (w_{K-T} held constant),
    dc_K/dlam|_T      = -eta T m^{K-1} (c_0 - beta) - (1 - m^T) beta / (a + lam),
    dc_K/dlog(eta)|_T = -eta (a + lam) T m^{K-1} (c_0 - beta).
As K -> inf, dc/dlam -> -beta/(a+lam) (the implicit answer) and dc/dlog(eta) -> 0.
"""
import functools

import numpy as np
import pytest
import tensorflow as tf

from tf_enas.hypergrad import forward_hypergradient, implicit_hypergradient, unrolled_hypergradient


def rel_err(a, b):
    return np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b))


def flat(xs):
    return np.concatenate([np.ravel(np.asarray(x)) for x in xs])


LAM, ETA = 0.2, 0.2


def quadratic():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    eig = np.array([0.8, 1.3, 2.0, 2.7, 3.5])
    a = q @ np.diag(eig) @ q.T
    b, w0 = rng.normal(size=5), rng.normal(size=5)
    c, d = rng.normal(size=(7, 5)), rng.normal(size=7)
    return a, b, w0, c, d


def quadratic_losses(a, b, c, d):
    a, b, c, d = (tf.constant(t) for t in (a, b, c, d))

    def train_loss(params, hparams, step):
        w = params[0]
        return (tf.reduce_sum(w * tf.linalg.matvec(a, w)) / 2 - tf.reduce_sum(b * w)
                + hparams[0] * tf.reduce_sum(w ** 2) / 2)

    def val_loss(params, hparams):
        return tf.reduce_sum((tf.linalg.matvec(c, params[0]) - d) ** 2) / 2

    return train_loss, val_loss


def closed_form(a, b, w0, c, d, steps, truncate=None):
    """(dL_val/dlam, dL_val/dlog eta, w_K) from the matrix polynomial above (numpy)."""
    eig, q = np.linalg.eigh(a)
    s = eig + LAM
    m = 1 - ETA * s
    beta, c0 = q.T @ b / s, q.T @ w0
    t = steps if truncate is None else min(truncate, steps)
    c_k = beta + m ** steps * (c0 - beta)
    d_lam = -ETA * t * m ** (steps - 1) * (c0 - beta) - (1 - m ** t) * beta / s
    d_log_eta = -ETA * s * t * m ** (steps - 1) * (c0 - beta)
    w_k = q @ c_k
    g_val = c.T @ (c @ w_k - d)
    return g_val @ (q @ d_lam), g_val @ (q @ d_log_eta), w_k


def make_fn(method, train_loss, val_loss, truncate=None, trace_log=None):
    """tf.function of a method: "forward", "reverse" (tensor steps: tf.while_loop), or
    "reverse_python" (steps baked in as a Python int: unrolled Python loop)."""
    if method == "forward":
        impl = forward_hypergradient
    else:
        impl = functools.partial(unrolled_hypergradient,
                                 loop="python" if method == "reverse_python" else "while")

    @tf.function
    def fn(params, hparams, steps):
        if trace_log is not None:
            trace_log.append(1)
        if method == "reverse_python":
            steps = int(steps)
        return impl(train_loss, val_loss, params, hparams, steps, optimizer="sgd",
                    learning_rate=lambda h: tf.exp(h[1]), truncate=truncate)
    return fn


def hparams0():
    return [tf.constant(LAM, tf.float64), tf.constant(np.log(ETA), tf.float64)]


@pytest.mark.parametrize("method", ["reverse", "reverse_python", "forward"])
@pytest.mark.parametrize("truncate", [None, 4, 30], ids=["full", "truncate4", "truncate_ge_K"])
def test_gd_on_quadratic_matches_matrix_polynomial(method, truncate):
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)
    steps = 12
    ref_lam, ref_eta, ref_w = closed_form(a, b, w0, c, d, steps, truncate)
    grads, final = make_fn(method, train_loss, val_loss, truncate)(
        [tf.constant(w0)], hparams0(), steps if method == "reverse_python" else tf.constant(steps))
    err = max(rel_err(grads[0], ref_lam), rel_err(grads[1], ref_eta))
    print(f"quadratic GD {method} truncate={truncate}: rel err {err:.2e}")
    assert err <= 1e-6
    assert rel_err(final[0].numpy(), ref_w) <= 1e-12
    if truncate == 4:  # the truncated quantity really differs from the full one here
        full_lam, full_eta, _ = closed_form(a, b, w0, c, d, steps)
        assert rel_err(ref_lam, full_lam) > 1e-2 and rel_err(ref_eta, full_eta) > 1e-2


@pytest.mark.parametrize("truncate, loops", [(None, 0), (3, 0), (5, 0), (1, 1)])
def test_python_loop_traces_a_loop_only_for_undifferentiated_steps(truncate, loops):
    """K = 3 static steps unrolled in Python: the K − T steps before the differentiated ones
    run in a tf.while_loop, and none is built when K − T ≤ 0 (its body would trace a
    whole train step that never runs)."""
    a, b, w0, c, d = quadratic()
    fn = make_fn("reverse_python", *quadratic_losses(a, b, c, d), truncate=truncate)
    graph = fn.get_concrete_function([tf.constant(w0)], hparams0(), 3).graph.as_graph_def()
    ops = [n.op for n in graph.node] + [n.op for f in graph.library.function
                                         for n in f.node_def]
    assert sum(op in ("While", "StatelessWhile") for op in ops) == loops


def test_unrolled_approaches_implicit_answer_without_retracing():
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)
    traces = []
    fn = make_fn("reverse", train_loss, val_loss, trace_log=traces)
    w_star = np.linalg.solve(a + LAM * np.eye(5), b)
    implicit, _ = implicit_hypergradient(lambda p, h: train_loss(p, h, 0), val_loss,
                                         [tf.constant(w_star)], hparams0(), method="exact")
    assert abs(float(implicit[1])) == 0.0  # IFT: the learning rate has no response
    errors = []
    for steps in (5, 20, 60, 200):
        grads, _ = fn([tf.constant(w0)], hparams0(), tf.constant(steps))
        ref_lam, ref_eta, _ = closed_form(a, b, w0, c, d, steps)
        # d/dlog(eta) decays like K m^K: at K = 200 it is 1e-17, round-off level, hence atol.
        np.testing.assert_allclose(flat(grads), [ref_lam, ref_eta], rtol=1e-6, atol=1e-12)
        errors.append(abs(float(grads[0]) - float(implicit[0])) / abs(float(implicit[0])))
    print("unrolled -> implicit, rel err for K=5,20,60,200:", ["%.1e" % e for e in errors])
    assert all(e1 > e2 for e1, e2 in zip(errors, errors[1:]))
    assert errors[-1] <= 1e-10
    assert len(traces) == 1  # steps is a tensor: one graph for every K


def test_eager_equals_tf_function():
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)
    for impl in (functools.partial(unrolled_hypergradient, loop="python"),
                 functools.partial(unrolled_hypergradient, loop="while"), forward_hypergradient):
        args = (train_loss, val_loss, [tf.constant(w0)], hparams0(), 6)
        kwargs = dict(learning_rate=lambda h: tf.exp(h[1]))
        eager, _ = impl(*args, **kwargs)
        graph, _ = tf.function(lambda: impl(*args, **kwargs))()
        ref_lam, ref_eta, _ = closed_form(a, b, w0, c, d, 6)
        assert rel_err(flat(eager), [ref_lam, ref_eta]) <= 1e-12
        assert rel_err(flat(graph), flat(eager)) <= 1e-12


# ------------------------------------------------ momentum and Adam vs central differences
# Logistic regression, minibatch (step % 3), hparams = [log lr, logit mu (or beta1), log l2].

def logistic_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(24, 4))
    t = (x @ rng.normal(size=4) + 0.5 * rng.normal(size=24) > 0).astype(np.float64)
    xv = rng.normal(size=(16, 4))
    tv = (xv @ rng.normal(size=4) > 0).astype(np.float64)
    return x, t, xv, tv, 0.1 * rng.normal(size=4)


def logistic_losses(x, t, xv, tv):
    xb, tb = tf.constant(x.reshape(3, 8, 4)), tf.constant(t.reshape(3, 8))
    xv, tv = tf.constant(xv), tf.constant(tv)

    def train_loss(params, hparams, step):
        i = step % 3
        z = tf.linalg.matvec(tf.gather(xb, i), params[0])
        ce = tf.nn.sigmoid_cross_entropy_with_logits(tf.gather(tb, i), z)
        return tf.reduce_mean(ce) + tf.exp(hparams[2]) * tf.reduce_sum(params[0] ** 2) / 2

    def val_loss(params, hparams):
        z = tf.linalg.matvec(xv, params[0])
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tv, z))

    return train_loss, val_loss


def numpy_train(x, t, w, hp, steps, optimizer, m0=None):
    """Reference loop (textbook heavy-ball momentum / Adam) in numpy, returns w_K."""
    lr, mu, l2 = np.exp(hp[0]), 1 / (1 + np.exp(-hp[1])), np.exp(hp[2])
    xb, tb = x.reshape(3, 8, 4), t.reshape(3, 8)
    m, v = (np.zeros_like(w) if m0 is None else m0), np.zeros_like(w)
    for k in range(steps):
        xi, ti = xb[k % 3], tb[k % 3]
        g = xi.T @ (1 / (1 + np.exp(-xi @ w)) - ti) / len(ti) + l2 * w
        if optimizer == "momentum":
            m = mu * m + g
            w = w - lr * m
        else:
            m = mu * m + (1 - mu) * g
            v = 0.999 * v + 0.001 * g ** 2
            m_hat, v_hat = m / (1 - mu ** (k + 1)), v / (1 - 0.999 ** (k + 1))
            w = w - lr * m_hat / (np.sqrt(v_hat + 1e-16) + 1e-8)
    return w


def numpy_val(xv, tv, w):
    z = xv @ w
    return np.mean(np.logaddexp(0, z) - tv * z)


@pytest.mark.parametrize("optimizer,log_lr", [("momentum", np.log(0.3)), ("adam", np.log(0.05))])
def test_momentum_and_adam_match_central_differences(optimizer, log_lr):
    x, t, xv, tv, w0 = logistic_data()
    train_loss, val_loss = logistic_losses(x, t, xv, tv)
    hp = np.array([log_lr, 0.5, np.log(0.05)])
    steps = 15
    kwargs = dict(optimizer=optimizer, learning_rate=lambda h: tf.exp(h[0]),
                  momentum=lambda h: tf.sigmoid(h[1]))
    hparams = [tf.constant(v) for v in hp]
    reverse, final = tf.function(lambda: unrolled_hypergradient(
        train_loss, val_loss, [tf.constant(w0)], hparams, tf.constant(steps), **kwargs))()
    forward, _ = tf.function(lambda: forward_hypergradient(
        train_loss, val_loss, [tf.constant(w0)], hparams, tf.constant(steps), **kwargs))()
    w_ref = numpy_train(x, t, w0, hp, steps, optimizer)
    assert rel_err(final[0].numpy(), w_ref) <= 1e-12  # same optimizer as the textbook
    eps = 1e-6
    fd = np.array([(numpy_val(xv, tv, numpy_train(x, t, w0, hp + eps * e, steps, optimizer))
                    - numpy_val(xv, tv, numpy_train(x, t, w0, hp - eps * e, steps, optimizer)))
                   / (2 * eps) for e in np.eye(3)])
    err = rel_err(flat(reverse), fd)
    print(f"{optimizer}: reverse vs central FD rel err {err:.2e}, "
          f"forward vs reverse {rel_err(flat(forward), flat(reverse)):.2e}")
    assert err <= 1e-6
    assert rel_err(flat(forward), flat(reverse)) <= 1e-6
    assert np.all(np.abs(fd) > 1e-4)  # every coordinate is a real test


@pytest.mark.parametrize("memory", ["full", "checkpointed"])
@pytest.mark.parametrize("steps", [1, 6])
def test_momentum_from_a_given_velocity_matches_central_differences(memory, steps):
    """init_state: heavy ball from (w0, v0); at K = 1 only v0 makes the momentum matter."""
    x, t, xv, tv, w0 = logistic_data()
    v0 = np.random.default_rng(3).normal(size=w0.shape)
    train_loss, val_loss = logistic_losses(x, t, xv, tv)
    hp = np.array([np.log(0.3), 0.5, np.log(0.05)])
    grads, final, aux = tf.function(lambda: unrolled_hypergradient(
        train_loss, lambda p, h: (val_loss(p, h), 2 * p[0]), [tf.constant(w0)],
        [tf.constant(v) for v in hp], steps, optimizer="momentum",
        learning_rate=lambda h: tf.exp(h[0]), momentum=lambda h: tf.sigmoid(h[1]),
        init_state=[tf.constant(v0)], memory=memory,
        loop="while" if memory == "checkpointed" else "auto", has_aux=True))()
    w_ref = numpy_train(x, t, w0, hp, steps, "momentum", m0=v0)
    assert rel_err(final[0].numpy(), w_ref) <= 1e-12
    np.testing.assert_allclose(aux.numpy(), 2 * final[0].numpy())
    eps = 1e-6
    fd = np.array([(numpy_val(xv, tv, numpy_train(x, t, w0, hp + eps * e, steps, "momentum", v0))
                    - numpy_val(xv, tv, numpy_train(x, t, w0, hp - eps * e, steps, "momentum",
                                                    v0))) / (2 * eps) for e in np.eye(3)])
    assert rel_err(flat(grads), fd) <= 1e-6
    assert np.all(np.abs(fd) > 1e-5)  # momentum included: v0 reaches w_1


def test_bad_arguments_raise():
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)
    args = (train_loss, val_loss, [tf.constant(w0)], hparams0())
    with pytest.raises(ValueError, match="optimizer"):
        unrolled_hypergradient(*args, 3, optimizer="rmsprop")
    with pytest.raises(ValueError, match="steps"):
        forward_hypergradient(*args, -1)
    with pytest.raises(ValueError, match="loop"):
        unrolled_hypergradient(*args, 3, loop="sideways")
    with pytest.raises(ValueError, match="Python ints"):
        tf.function(lambda k: unrolled_hypergradient(*args, k, loop="python"))(tf.constant(3))
    with pytest.raises(ValueError, match="init_state must be shaped like the momentum"):
        unrolled_hypergradient(*args, 3, optimizer="momentum", init_state=[tf.zeros(2)])
    with pytest.raises(ValueError, match="hparams is empty"):
        unrolled_hypergradient(train_loss, val_loss, [tf.constant(w0)], [], 3)


@pytest.mark.parametrize("impl", ["python", "while", "forward"])
def test_runs_under_xla_jit_compile(impl):
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)
    kwargs = dict(learning_rate=lambda h: tf.exp(h[1]), truncate=5)
    if impl == "forward":
        fn = lambda p, h: forward_hypergradient(train_loss, val_loss, p, h, 8, **kwargs)  # noqa
    else:
        fn = lambda p, h: unrolled_hypergradient(train_loss, val_loss, p, h, 8, loop=impl,  # noqa
                                                 **kwargs)
    grads, _ = tf.function(fn, jit_compile=True)([tf.constant(w0)], hparams0())
    ref_lam, ref_eta, _ = closed_form(a, b, w0, c, d, 8, truncate=5)
    assert rel_err(flat(grads), [ref_lam, ref_eta]) <= 1e-10


def test_variables_as_params_and_hparams_without_retracing():
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)
    w_var = tf.Variable(w0)
    h_vars = [tf.Variable(LAM, dtype=tf.float64), tf.Variable(np.log(ETA), dtype=tf.float64)]
    traces = []

    @tf.function
    def fn(steps):
        traces.append(1)
        return unrolled_hypergradient(train_loss, val_loss, [w_var], h_vars, steps,
                                      learning_rate=lambda h: tf.exp(h[1]))

    for steps in (3, 9):
        grads, _ = fn(tf.constant(steps))
        ref_lam, ref_eta, _ = closed_form(a, b, w0, c, d, steps)
        assert rel_err(flat(grads), [ref_lam, ref_eta]) <= 1e-10
    h_vars[0].assign(0.5)  # a new hyperparameter value: same graph, new answer
    grads, _ = fn(tf.constant(9))
    assert len(traces) == 1
    assert rel_err(float(grads[0]), ref_lam) > 1e-3
