"""unrolled_hypergradient(memory="checkpointed") against plain reverse mode and closed forms.

Recomputation from checkpoints is the same arithmetic as one tape over all steps, so the
references are plain reverse mode (memory="full", the peer), the matrix polynomial of
gradient descent on a quadratic (test_unrolled.closed_form) and central differences of a
numpy training loop (logistic regression with momentum / Adam), all in float64.
"""
import numpy as np
import pytest
import tensorflow as tf

from tf_enas.hypergrad import unrolled_hypergradient
from tests.hypergrad.test_unrolled import (LAM, closed_form, flat, hparams0, logistic_data,
                                           logistic_losses, numpy_train, numpy_val,
                                           quadratic, quadratic_losses, rel_err)


def quadratic_fn(memory, truncate=None, trace_log=None):
    """tf.function (steps[, checkpoint_every]) -> (grads, w_K) on the quadratic."""
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)

    @tf.function
    def fn(steps, checkpoint_every=None):
        if trace_log is not None:
            trace_log.append(1)
        extra = {} if memory == "full" else {"checkpoint_every": checkpoint_every}
        return unrolled_hypergradient(train_loss, val_loss, [tf.constant(w0)], hparams0(),
                                      steps, learning_rate=lambda h: tf.exp(h[1]),
                                      truncate=truncate, loop="while", memory=memory, **extra)
    return fn, (a, b, w0, c, d)


@pytest.mark.parametrize("truncate", [None, 5])
def test_quadratic_equals_plain_reverse_and_matrix_polynomial(truncate):
    traces = []
    fn, problem = quadratic_fn("checkpointed", truncate, traces)
    plain, _ = quadratic_fn("full", truncate)
    for steps in (1, 12, 13):  # 12 = 3 x 4: segments fit exactly; 13: a short last one
        ref_lam, ref_eta, ref_w = closed_form(*problem, steps, truncate)
        peer, _ = plain(tf.constant(steps))
        assert rel_err(flat(peer), [ref_lam, ref_eta]) <= 1e-6
        for every in (None, 1, 4, 7, 100):
            grads, final = fn(tf.constant(steps),
                              None if every is None else tf.constant(every))
            assert rel_err(flat(grads), flat(peer)) <= 1e-6, (steps, every)
            assert rel_err(flat(grads), [ref_lam, ref_eta]) <= 1e-6, (steps, every)
            assert rel_err(final[0].numpy(), ref_w) <= 1e-12, (steps, every)
    assert len(traces) == 2  # steps and checkpoint_every tensors: one graph each for None / set


def test_zero_steps_gives_the_direct_gradient_only():
    fn, problem = quadratic_fn("checkpointed")
    grads, final = fn(tf.constant(0))
    np.testing.assert_array_equal(flat(grads), [0.0, 0.0])  # val_loss ignores hparams
    np.testing.assert_array_equal(final[0].numpy(), problem[2])


def test_eager_equals_tf_function_and_long_horizon():
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)

    def run(steps, memory):
        return unrolled_hypergradient(train_loss, val_loss, [tf.constant(w0)], hparams0(),
                                      steps, learning_rate=lambda h: tf.exp(h[1]),
                                      memory=memory)[0]
    eager = run(9, "checkpointed")
    graph = tf.function(lambda: run(9, "checkpointed"))()
    assert rel_err(flat(eager), closed_form(a, b, w0, c, d, 9)[:2]) <= 1e-12
    assert rel_err(flat(graph), flat(eager)) <= 1e-12
    # K = 150: 13 segments of ceil(sqrt 150) = 13 steps (the last one 6).
    long = tf.function(lambda: run(150, "checkpointed"))()
    peer = tf.function(lambda: run(150, "full"))()
    ref = closed_form(a, b, w0, c, d, 150)[:2]
    np.testing.assert_allclose(flat(long), flat(peer), rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(flat(long), ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("optimizer,log_lr", [("momentum", np.log(0.3)), ("adam", np.log(0.05))])
def test_logistic_regression_equals_plain_reverse_and_central_differences(optimizer, log_lr):
    x, t, xv, tv, w0 = logistic_data()
    train_loss, val_loss = logistic_losses(x, t, xv, tv)
    hp = np.array([log_lr, 0.5, np.log(0.05)])
    steps, truncate = 15, None
    hparams = [tf.constant(v) for v in hp]
    kwargs = dict(optimizer=optimizer, learning_rate=lambda h: tf.exp(h[0]),
                  momentum=lambda h: tf.sigmoid(h[1]), truncate=truncate)

    @tf.function
    def fn(memory, every=None):
        extra = {} if memory == "full" else {"checkpoint_every": every}
        return unrolled_hypergradient(train_loss, val_loss, [tf.constant(w0)], hparams,
                                      tf.constant(steps), memory=memory, **extra, **kwargs)
    plain, _ = fn("full")
    eps = 1e-6
    fd = np.array([(numpy_val(xv, tv, numpy_train(x, t, w0, hp + eps * e, steps, optimizer))
                    - numpy_val(xv, tv, numpy_train(x, t, w0, hp - eps * e, steps, optimizer)))
                   / (2 * eps) for e in np.eye(3)])
    for every in (2, 4):  # 8 segments of 2 (last 1); 4 of 4 (last 3); one trace for both
        grads, final = fn("checkpointed", tf.constant(every))
        assert rel_err(flat(grads), flat(plain)) <= 1e-6, every
        assert rel_err(flat(grads), fd) <= 1e-6, every
        w_ref = numpy_train(x, t, w0, hp, steps, optimizer)
        assert rel_err(final[0].numpy(), w_ref) <= 1e-12


def test_bad_arguments_raise():
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)
    args = (train_loss, val_loss, [tf.constant(w0)], hparams0(), 3)
    with pytest.raises(ValueError, match="memory must be one of"):
        unrolled_hypergradient(*args, memory="tiny")
    for bad in (0, 2.5, True, tf.constant(2.0), tf.constant([2, 3])):
        with pytest.raises(ValueError, match="checkpoint_every must be"):
            unrolled_hypergradient(*args, memory="checkpointed", checkpoint_every=bad)
    with pytest.raises(ValueError, match="checkpoint_every needs memory='checkpointed'"):
        unrolled_hypergradient(*args, checkpoint_every=2)
    with pytest.raises(ValueError, match="loop='auto' or 'while'"):
        unrolled_hypergradient(*args, memory="checkpointed", loop="python")


def test_runs_under_xla_jit_compile():
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)
    fn = tf.function(lambda p, h: unrolled_hypergradient(
        train_loss, val_loss, p, h, 8, learning_rate=lambda h: tf.exp(h[1]), truncate=5,
        memory="checkpointed"), jit_compile=True)
    grads, _ = fn([tf.constant(w0)], hparams0())
    assert rel_err(flat(grads), closed_form(a, b, w0, c, d, 8, truncate=5)[:2]) <= 1e-10


def test_direct_and_unused_hyperparameters_match_plain_reverse():
    """val_loss that reads lambda directly (+ lam^2 / 2: direct gradient lam) and a third
    hyperparameter that nothing reads (gradient exactly 0)."""
    a, b, w0, c, d = quadratic()
    train_loss, val_loss = quadratic_losses(a, b, c, d)

    def val_with_direct(params, hparams):
        return val_loss(params, hparams) + hparams[0] ** 2 / 2

    def run(memory):
        hparams = hparams0() + [tf.constant(3.0, tf.float64)]
        return tf.function(lambda: unrolled_hypergradient(
            train_loss, val_with_direct, [tf.constant(w0)], hparams, tf.constant(10),
            learning_rate=lambda h: tf.exp(h[1]), memory=memory))()[0]
    checkpointed, plain = flat(run("checkpointed")), flat(run("full"))
    ref_lam, ref_eta, _ = closed_form(a, b, w0, c, d, 10)
    np.testing.assert_allclose(checkpointed[:2], [ref_lam + LAM, ref_eta], rtol=1e-10)
    assert rel_err(checkpointed, plain) <= 1e-12
    assert checkpointed[2] == 0.0
