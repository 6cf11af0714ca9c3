"""Matrix-free solvers of (A + delta I) x = b over lists of tensors, as tf.while_loops.

A is given only through ``matvec(v) -> A v`` (e.g. a Hessian-vector product) and is
assumed symmetric. Every solver returns ``(x, SolverInfo)``; the info fields are tensors,
so they can be returned from a ``tf.function`` and checked by the caller.
"""
import collections

import numpy as np
import tensorflow as tf

from tf_enas.hypergrad import _lists


class SolverInfo(collections.namedtuple(
        "SolverInfo",
        ["iterations", "residual_norm", "converged", "negative_curvature", "diverged"])):
    """What a solve did.

    iterations: int32, matvecs used (0 for a dense solve). residual_norm:
    ||b - (A + delta I) x|| (for CG the recursively updated residual). converged:
    residual_norm <= tol * ||b|| and finite. negative_curvature: CG met
    p^T (A + delta I) p <= 0 (A + delta I is not positive definite) and stopped there;
    dense solves report min eigenvalue <= 0; always False for Neumann, which shows an
    indefinite A as divergence. diverged: the iteration blew up (Neumann terms grew, or
    anything became non-finite).
    """


def _check(b, name):
    b = _lists.as_tensors(b)
    if not b:
        raise ValueError(f"{name}: b is an empty list")
    return b


def _with_damping(matvec, damping):
    if isinstance(damping, (int, float)) and damping == 0:
        return matvec
    return lambda v: _lists.axpy(damping, v, matvec(v))


def conjugate_gradient(matvec, b, iterations, tol=1e-6, damping=0.0):
    """x ~= (A + delta I)^{-1} b by conjugate gradient, stopping at negative curvature.

    Starts from x = 0 and stops after ``iterations`` matvecs, when ||r|| <= tol * ||b||,
    or when p^T (A + delta I) p <= 0. In the last case A + delta I is not positive
    definite on the Krylov space, the CG step would be meaningless, and the returned x is
    the last iterate before it (the minimiser of the quadratic on the previous Krylov
    space, zero if it happened on the first step) with ``info.negative_curvature`` set:
    raise ``damping`` or use another method.
    """
    b = _check(b, "conjugate_gradient")
    dtype = b[0].dtype
    op = _with_damping(matvec, damping)
    b_norm = _lists.norm(b)
    threshold = _lists.scalar(tol, dtype) * b_norm
    x0 = [tf.zeros_like(t) for t in b]
    rs0 = _lists.dot(b, b)
    converged0 = tf.sqrt(rs0) <= threshold
    false = tf.constant(False)

    def cond(i, x, r, p, rs, converged, negative, diverged):
        return tf.logical_and(i < iterations,
                              tf.logical_not(converged | negative | diverged))

    def body(i, x, r, p, rs, converged, negative, diverged):
        ap = op(p)
        pap = _lists.dot(p, ap)
        negative = pap <= 0
        alpha = rs / tf.where(negative, tf.ones_like(pap), pap)
        x_new = _lists.axpy(alpha, p, x)
        r_new = _lists.axpy(-alpha, ap, r)
        rs_new = _lists.dot(r_new, r_new)
        beta = rs_new / rs
        p_new = _lists.axpy(beta, p, r_new)
        diverged = tf.logical_not(tf.math.is_finite(rs_new) & tf.math.is_finite(pap))
        keep = negative | diverged
        x = _lists.select(keep, x, x_new)
        r = _lists.select(keep, r, r_new)
        p = _lists.select(keep, p, p_new)
        rs = tf.where(keep, rs, rs_new)
        converged = tf.logical_not(keep) & (tf.sqrt(rs) <= threshold)
        return i + 1, x, r, p, rs, converged, negative, diverged

    i, x, _, _, rs, converged, negative, diverged = tf.while_loop(
        cond, body,
        (tf.constant(0, tf.int32), x0, b, b, rs0, converged0, false, false),
        maximum_iterations=iterations)
    return x, SolverInfo(i, tf.sqrt(rs), converged, negative, diverged)


def neumann(matvec, b, iterations, alpha, tol=0.0, damping=0.0):
    """x ~= (A + delta I)^{-1} b = alpha * sum_{k<K} (I - alpha (A + delta I))^k b.

    Converges iff the spectrum of alpha (A + delta I) lies in (0, 2), i.e. A + delta I is
    positive definite and alpha < 2 / lambda_max. The k-th term v_k = (I - alpha A)^k b is
    exactly the residual of the partial sum (b - A x_k = v_k), so ||v_k|| is reported as
    the residual for free. For symmetric A the terms shrink monotonically when the series
    converges; the loop stops with ``info.diverged`` as soon as a term grows (or turns
    non-finite), and early with ``converged`` once ||v_k|| <= tol * ||b||.
    """
    b = _check(b, "neumann")
    dtype = b[0].dtype
    op = _with_damping(matvec, damping)
    alpha = _lists.scalar(alpha, dtype)
    b_norm = _lists.norm(b)
    threshold = _lists.scalar(tol, dtype) * b_norm
    # Slack for round-off only: a symmetric contraction never grows ||v_k|| in exact arithmetic.
    growth = tf.constant(1.0 + 64 * np.finfo(dtype.as_numpy_dtype).eps, dtype)
    partial0 = [tf.zeros_like(t) for t in b]
    false = tf.constant(False)

    def cond(i, partial, v, v_norm, converged, diverged):
        return tf.logical_and(i < iterations, tf.logical_not(converged | diverged))

    def body(i, partial, v, v_norm, converged, diverged):
        partial = _lists.add(partial, v)
        v = _lists.axpy(-alpha, op(v), v)
        new_norm = _lists.norm(v)
        diverged = tf.logical_not(tf.math.is_finite(new_norm)) | (new_norm > growth * v_norm)
        converged = tf.logical_not(diverged) & (new_norm <= threshold)
        return i + 1, partial, v, new_norm, converged, diverged

    i, partial, _, v_norm, converged, diverged = tf.while_loop(
        cond, body,
        (tf.constant(0, tf.int32), partial0, b, b_norm, b_norm <= threshold, false),
        maximum_iterations=iterations)
    converged = tf.logical_not(diverged) & (v_norm <= threshold)
    return _lists.scale(alpha, partial), SolverInfo(i, v_norm, converged, false, diverged)


def dense_matrix(matvec, like):
    """The n x n matrix A with flatten(matvec(v)) = A flatten(v), built column by column."""
    like = _lists.as_tensors(like)
    n = _lists.num_elements(like)
    dtype = like[0].dtype

    def column(j):
        e = tf.one_hot(j, n, dtype=dtype)
        return _lists.flatten(matvec(_lists.unflatten(e, like)))

    columns = tf.map_fn(column, tf.range(n), fn_output_signature=dtype)
    return tf.transpose(columns)


def dense_solve(matrix, b, tol=1e-6, damping=0.0):
    """x = (A + delta I)^{-1} b with a dense symmetric A (n x n, flattened order of b)."""
    b = _check(b, "dense_solve")
    dtype = b[0].dtype
    n = _lists.num_elements(b)
    a = matrix + _lists.scalar(damping, dtype) * tf.eye(n, dtype=dtype)
    rhs = _lists.flatten(b)
    x = tf.linalg.solve(a, rhs[:, None])[:, 0]
    residual = tf.norm(rhs - tf.linalg.matvec(a, x))
    min_eig = tf.reduce_min(tf.linalg.eigvalsh(0.5 * (a + tf.transpose(a))))
    finite = tf.reduce_all(tf.math.is_finite(x))
    converged = finite & (residual <= _lists.scalar(tol, dtype) * tf.norm(rhs))
    info = SolverInfo(tf.constant(0, tf.int32), residual, converged, min_eig <= 0,
                      tf.logical_not(finite))
    return _lists.unflatten(x, b), info
