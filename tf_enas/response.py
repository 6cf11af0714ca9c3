"""Response-gradient estimators for the controller objective J(φ) = E_{λ∼π_φ} L_val(a, w(λ)).

Each estimator is a *surrogate*: a scalar whose gradient in φ (taken inside the caller's
GradientTape, around a `JointController.walk(..., pathwise=True)`) is the estimate.

* none:     ∇_φ J ≈ (1/B) Σ_i (L_i − b_i) ∇_φ log π_φ(λ_i)  (REINFORCE; ENAS drops the response).
* unrolled: + (1/B) Σ_i (∂L_val(a_i, w_K(h_i))/∂h_i) · ∂_φ h_i, w_K = K differentiable steps of
            the child's own optimizer (pathwise, through the reparameterized h only; the
            continuous decisions then leave the score term, or they would count twice).
* ift:      + −∂_φ E_π[uᵀ∇_w L_train(λ, w)], (H + δI)u = E∇_w L_val, H = ∇²_w E_π L_train:
            score function through the discrete a, pathwise through continuous h that
            L_train reads (weight decay). The fixed point w* = argmin_w E_π L_train does not
            depend on the optimizer's dynamics, so learning rate and momentum get exactly
            zero IFT response (∂c/∂h = 0 identically).

Baselines b_i must not depend on λ_i (leave-one-out means do not), which keeps every
estimate unbiased. The IFT estimate is cross-fitted (`ift_cross_fit`): u from one half of
the batch couples the other half, so c_i = uᵀ∇_w L_train(λ_i) never contains λ_i's own
validation gradient; with a Hessian that does not depend on λ the estimate is unbiased.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_enas import hypergrad

RESPONSES = ("none", "unrolled", "ift")
_ZERO = tf.UnconnectedGradients.ZERO


def leave_one_out_mean(x):
    """b_i = (Σ_j x_j − x_i)/(B − 1): a baseline for sample i that does not depend on it."""
    x = tf.convert_to_tensor(x)
    n = tf.cast(tf.shape(x)[0], x.dtype)
    return (tf.reduce_sum(x, 0, keepdims=True) - x) / tf.maximum(n - 1, 1)


def reinforce_surrogate(log_prob, losses, baseline=None):
    """∇_φ S = (1/B) Σ_i (L_i − b_i) ∇_φ log π_φ(λ_i): score-function estimate of ∇_φ E_π L.

    baseline: None (leave-one-out mean of losses), a tensor [B] or a scalar.
    """
    losses = tf.stop_gradient(tf.cast(losses, log_prob.dtype))
    b = leave_one_out_mean(losses) if baseline is None else tf.stop_gradient(
        tf.cast(baseline, log_prob.dtype))
    return tf.reduce_mean((losses - b) * log_prob)


def ift_solve(train_loss, params, rhs, iterations, damping=0.0, tol=1e-6):
    """u ≈ (∇²_w L_train(w) + δI)⁻¹ rhs by conjugate gradient on Hessian-vector products.

    train_loss(params) -> scalar. Returns (u, hypergrad.SolverInfo); CG stops at negative
    curvature (info.negative_curvature) with its last iterate.
    """
    matvec = hypergrad.hvp_fn(train_loss, params)
    return hypergrad.conjugate_gradient(matvec, rhs, iterations, tol=tol, damping=damping)


def ift_coupling(train_loss, params, u, hparams):
    """(c, ∂c/∂h) for c(h) = uᵀ∇_w L_train(w, h), one child; train_loss(params, h) -> scalar.

    ∂c/∂h is exactly zero for every h that L_train does not read (learning rate, momentum).
    """
    params = [tf.convert_to_tensor(p) for p in params]
    h = tf.convert_to_tensor(hparams)
    with tf.GradientTape() as outer:
        outer.watch(h)
        with tf.GradientTape() as inner:
            inner.watch(params)
            loss = train_loss(params, h)
        grads = inner.gradient(loss, params, unconnected_gradients=_ZERO)
        c = tf.add_n([tf.reduce_sum(tf.stop_gradient(ui) * g) for ui, g in zip(u, grads)])
    return c, outer.gradient(c, h, unconnected_gradients=_ZERO)


def ift_cross_fit(solve, couple, batch_size):
    """Cross-fitted IFT couplings for a batch of B ≥ 4 children split in halves A, B.

    solve(idx) -> (u, SolverInfo), idx a NumPy int array: u ≈ (H_idx + δI)⁻¹ mean_{i∈idx}
    ∇_w L_val(λ_i), H_idx the Hessian of the mean training loss of children idx;
    couple(u, idx) -> (c [n], ∂c/∂h [n, C]).
    Children of B are coupled with u_A and those of A with u_B. Returns (c [B], dc/dh [B, C],
    baseline [B], [info_A, info_B]); baseline_i is the leave-one-out mean of c within i's
    half (coupled by the same u, independent of λ_i).
    """
    if batch_size < 4:
        raise ValueError(f"the IFT response needs a controller batch of at least 4 "
                         f"children (two halves of >= 2), got {batch_size}")
    half = batch_size // 2
    idx_a, idx_b = np.arange(half), np.arange(half, batch_size)  # static: callers may loop
    u_a, info_a = solve(idx_a)
    u_b, info_b = solve(idx_b)
    c_a, dc_a = couple(u_b, idx_a)
    c_b, dc_b = couple(u_a, idx_b)
    c = tf.concat([c_a, c_b], 0)
    baseline = tf.concat([leave_one_out_mean(c_a), leave_one_out_mean(c_b)], 0)
    return c, tf.concat([dc_a, dc_b], 0), baseline, [info_a, info_b]


def ift_surrogate(coupling, dcoupling_dh, discrete_log_prob, values, baseline):
    """∇_φ S = −(1/B) Σ_i [(c_i − b_i) ∇_φ log π_φ(a_i) + (∂c_i/∂h)·∂_φ h_i] ≈ −∂_φ E_π[uᵀ∇_w L_train].

    values: the children's continuous h as differentiable functions of φ (pathwise walk).
    """
    c = tf.stop_gradient(coupling - baseline)
    pathwise = tf.reduce_sum(tf.stop_gradient(dcoupling_dh) * values, -1)
    return -tf.reduce_mean(c * discrete_log_prob + pathwise)


def unrolled_hypergradient(train_loss, val_loss, params, hparams, steps, learning_rate,
                           momentum=0.0, optimizer="momentum"):
    """(∂L_val(w_K)/∂h, L_val(w_K)) through K steps of heavy-ball momentum (v ← μv + g, w ← w − ηv).

    train_loss(params, h, step) and val_loss(params, h) -> scalar; learning_rate and
    momentum: floats or callables of the hparams list [h] (e.g. lambda hp: hp[0][0]).
    Runs hypergrad.unrolled_hypergradient (nested tapes, reverse mode).
    """
    h = tf.convert_to_tensor(hparams)
    grads, final = hypergrad.unrolled_hypergradient(
        lambda p, hp, t: train_loss(p, hp[0], t), lambda p, hp: val_loss(p, hp[0]),
        params, [h], steps, optimizer=optimizer, learning_rate=learning_rate,
        momentum=momentum)
    return grads[0], val_loss(final, h)


def unrolled_surrogate(dloss_dh, values):
    """∇_φ S = (1/B) Σ_i (∂L_val(a_i, w_K(h_i))/∂h_i)·∂_φ h_i: pathwise through reparameterized h."""
    return tf.reduce_mean(tf.reduce_sum(tf.stop_gradient(dloss_dh) * values, -1))
