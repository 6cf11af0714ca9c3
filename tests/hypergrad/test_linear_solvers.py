"""conjugate_gradient / neumann / dense_solve against numpy.linalg, under tf.function."""
import numpy as np
import pytest
import tensorflow as tf

from tf_enas.hypergrad import conjugate_gradient, dense_matrix, dense_solve, neumann


def rel_err(a, b):
    return np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b))


def spd_matrix(eigenvalues, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigenvalues),) * 2))
    return q @ np.diag(eigenvalues) @ q.T, q


def split(v):
    """A 6-vector as a list of two tensors (shapes [2, 2] and [2]) to exercise list algebra."""
    return [tf.constant(v[:4].reshape(2, 2)), tf.constant(v[4:])]


def join(xs):
    return np.concatenate([np.ravel(x) for x in xs])


def matvec_of(a):
    a = tf.constant(a)
    return lambda xs: split_t(tf.linalg.matvec(a, tf.concat([tf.reshape(x, [-1]) for x in xs], 0)))


def split_t(v):
    return [tf.reshape(v[:4], [2, 2]), v[4:]]


def numpy_cg(a, b, iterations):
    """Textbook CG; returns the iterates x_0..x_k and the index where p^T A p <= 0 (or None)."""
    x, r = np.zeros_like(b), b.copy()
    p, iterates = r.copy(), [np.zeros_like(b)]
    for k in range(iterations):
        ap = a @ p
        if p @ ap <= 0:
            return iterates, k
        alpha = (r @ r) / (p @ ap)
        x = x + alpha * p
        r_new = r - alpha * ap
        p = r_new + (r_new @ r_new) / (r @ r) * p
        r = r_new
        iterates.append(x.copy())
    return iterates, None


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_cg_solves_spd_system(dtype, tol):
    a, _ = spd_matrix(np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.2]), seed=0)
    b = np.random.default_rng(1).normal(size=6)
    solve = tf.function(lambda b_: conjugate_gradient(matvec_of(a.astype(dtype)), b_, 50,
                                                      tol=1e-12 if dtype == np.float64 else 1e-6))
    x, info = solve(split(b.astype(dtype)))
    assert rel_err(join(x), np.linalg.solve(a, b)) <= tol
    assert bool(info.converged) and not bool(info.negative_curvature)
    assert int(info.iterations) <= 7  # n = 6 plus round-off
    assert float(info.residual_norm) <= (1e-12 if dtype == np.float64 else 1e-6) * np.linalg.norm(b)


def test_cg_stops_at_iteration_limit_with_numpy_iterate():
    a, _ = spd_matrix(np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.2]), seed=2)
    b = np.random.default_rng(3).normal(size=6)
    x, info = tf.function(lambda: conjugate_gradient(matvec_of(a), split(b), 3, tol=0.0))()
    iterates, _ = numpy_cg(a, b, 3)
    assert int(info.iterations) == 3 and not bool(info.converged)
    assert rel_err(join(x), iterates[3]) <= 1e-12
    assert abs(float(info.residual_norm) - np.linalg.norm(b - a @ iterates[3])) <= 1e-10


def test_cg_indefinite_reports_negative_curvature_on_first_step():
    a, q = spd_matrix(np.array([3.0, 2.0, 1.0, 0.5, 0.25, -1.0]), seed=4)
    b = q @ np.array([0.1, 0.1, 0.1, 0.1, 0.1, 1.0])
    assert b @ a @ b < 0  # precondition: the very first direction has negative curvature
    x, info = tf.function(lambda: conjugate_gradient(matvec_of(a), split(b), 20, tol=1e-10))()
    assert bool(info.negative_curvature) and not bool(info.converged)
    assert int(info.iterations) == 1
    np.testing.assert_array_equal(join(x), np.zeros(6))  # last iterate before the bad step


def test_cg_indefinite_negative_curvature_later_returns_last_good_iterate():
    a, _ = spd_matrix(np.array([1.0, 1.0, 1.0, 1.0, 1.0, -1.0]), seed=5)
    # In the eigenbasis b = (1, 0.5): b^T A b > 0, the second direction has p^T A p < 0.
    _, q = np.linalg.eigh(a)
    b = q[:, 5] + 0.5 * q[:, 0]  # eigh sorts ascending: q[:, 0] has eigenvalue -1
    iterates, k = numpy_cg(a, b, 6)
    assert k == 1  # precondition from the numpy reference
    x, info = tf.function(lambda: conjugate_gradient(matvec_of(a), split(b), 20, tol=1e-10))()
    assert bool(info.negative_curvature) and not bool(info.converged)
    assert int(info.iterations) == 2
    assert rel_err(join(x), iterates[1]) <= 1e-12
    assert np.all(np.isfinite(join(x)))


def test_cg_indefinite_with_damping_converges_to_numpy_solve():
    a, q = spd_matrix(np.array([3.0, 2.0, 1.0, 0.5, 0.25, -1.0]), seed=4)
    b = q @ np.array([0.1, 0.1, 0.1, 0.1, 0.1, 1.0])
    damping = 1.5
    x, info = tf.function(lambda: conjugate_gradient(matvec_of(a), split(b), 30, tol=1e-12,
                                                     damping=damping))()
    assert bool(info.converged) and not bool(info.negative_curvature)
    assert rel_err(join(x), np.linalg.solve(a + damping * np.eye(6), b)) <= 1e-10


def test_cg_zero_rhs_returns_zero_without_iterating():
    a, _ = spd_matrix(np.ones(6), seed=6)
    x, info = conjugate_gradient(matvec_of(a), split(np.zeros(6)), 10, tol=1e-8)
    assert int(info.iterations) == 0 and bool(info.converged)
    np.testing.assert_array_equal(join(x), np.zeros(6))


def test_neumann_converges_below_two_over_lambda_max():
    eig = np.array([4.0, 3.0, 2.0, 1.5, 1.2, 1.0])
    a, _ = spd_matrix(eig, seed=7)
    b = np.random.default_rng(8).normal(size=6)
    alpha = 1.0 / eig.max()
    x, info = tf.function(lambda: neumann(matvec_of(a), split(b), 200, alpha))()
    assert rel_err(join(x), np.linalg.solve(a, b)) <= 1e-10
    assert not bool(info.diverged)
    # The reported residual is ||b - A x|| (the next Neumann term), not an estimate.
    assert abs(float(info.residual_norm) - np.linalg.norm(b - a @ join(x))) <= 1e-12


def test_neumann_partial_sum_matches_numpy_series_and_tol_stops_early():
    eig = np.array([4.0, 3.0, 2.0, 1.5, 1.2, 1.0])
    a, _ = spd_matrix(eig, seed=7)
    b = np.random.default_rng(8).normal(size=6)
    alpha = 0.3
    x, info = neumann(matvec_of(a), split(b), 5, alpha)
    m = np.eye(6) - alpha * a
    series = alpha * sum(np.linalg.matrix_power(m, k) @ b for k in range(5))
    assert rel_err(join(x), series) <= 1e-12 and int(info.iterations) == 5
    _, info = neumann(matvec_of(a), split(b), 500, alpha, tol=1e-8)
    assert bool(info.converged) and int(info.iterations) < 500
    assert float(info.residual_norm) <= 1e-8 * np.linalg.norm(b)


def test_neumann_reports_divergence_above_two_over_lambda_max():
    eig = np.array([4.0, 3.0, 2.0, 1.5, 1.2, 1.0])
    a, _ = spd_matrix(eig, seed=7)
    b = np.random.default_rng(8).normal(size=6)
    x, info = tf.function(lambda: neumann(matvec_of(a), split(b), 200, 2.2 / eig.max()))()
    assert bool(info.diverged) and not bool(info.converged)
    assert int(info.iterations) < 200  # stopped at the first growing term


def test_neumann_reports_divergence_on_indefinite_matrix():
    a, _ = spd_matrix(np.array([2.0, 1.0, 1.0, 1.0, 1.0, -0.5]), seed=9)
    b = np.random.default_rng(10).normal(size=6)
    _, info = neumann(matvec_of(a), split(b), 500, 0.4)
    assert bool(info.diverged) and not bool(info.converged)


def test_dense_solve_matches_numpy_and_flags_indefinite():
    a, _ = spd_matrix(np.array([3.0, 2.0, 1.0, 0.5, 0.25, -1.0]), seed=11)
    b = np.random.default_rng(12).normal(size=6)
    like = split(b)
    mat = tf.function(lambda: dense_matrix(matvec_of(a), like))()
    np.testing.assert_allclose(mat.numpy(), a, rtol=0, atol=1e-14)
    x, info = dense_solve(mat, like, tol=1e-10)
    assert rel_err(join(x), np.linalg.solve(a, b)) <= 1e-12
    assert bool(info.converged) and bool(info.negative_curvature)
    x, info = dense_solve(mat, like, tol=1e-10, damping=2.0)
    assert rel_err(join(x), np.linalg.solve(a + 2 * np.eye(6), b)) <= 1e-12
    assert not bool(info.negative_curvature)
