"""The implicit (IFT) estimator: the response through w* = argmin_w E_π L_train(a, h, w).

    −∂_φ E_π[uᵀ∇_w L_train(a, h, w)],   (H + δI) u = E_π ∇_w L_val(a, w),   H = ∇²_w E_π L_train

score function through the categorical a, pathwise through continuous h that L_train
reads (weight decay). It approximates K → ∞ for the hyperparameters of the training
loss; learning rate and momentum do not move w*, so they get exactly zero. It is biased:
the damping δ, and E[(H_a + δI)⁻¹] ≠ (E H + δI)⁻¹ with per-batch Hessians. The estimate is
cross-fitted (u from one half of the batch couples the other half). A solve that meets
negative curvature or does not converge is not applied (its step is counted as skipped).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_enas import hypergrad
from tf_enas.controller import ResponseTerms
from tf_enas.objective import JVPS
from tf_enas.response.score_function import ScoreFunction, leave_one_out_mean

_ZERO = tf.UnconnectedGradients.ZERO


def ift_coupling(train_loss, params, u, hparams):
    """(c, ∂c/∂h) for c(h) = uᵀ∇_w L_train(w, h), one child; train_loss(params, h) -> scalar,
    u a 1-D vector over the weights flattened in order (hypergrad.flatten)."""
    params = [tf.convert_to_tensor(p) for p in params]
    h = tf.convert_to_tensor(hparams)
    with tf.GradientTape() as outer:
        outer.watch(h)
        with tf.GradientTape() as inner:
            inner.watch(params)
            loss = train_loss(params, h)
        grads = inner.gradient(loss, params, unconnected_gradients=_ZERO)
        c = tf.reduce_sum(tf.stop_gradient(u) * hypergrad.flatten(grads))
    return c, outer.gradient(c, h, unconnected_gradients=_ZERO)


def ift_cross_fit(solve, couple, batch_size):
    """Cross-fitted couplings for B ≥ 4 children split in halves A, B.

    solve(idx) -> (u, SolverInfo) for the children idx (a NumPy int array);
    couple(u, idx) -> (c [n], ∂c/∂h [n, C]). Children of B are coupled with u_A and those
    of A with u_B. Returns (c [B], ∂c/∂h [B, C], baseline [B], [info_A, info_B]), baseline_i
    the leave-one-out mean of c within i's half.
    """
    if batch_size < 4:
        raise ValueError(f"the IFT response needs a controller batch of at least 4 "
                         f"children (two halves of >= 2), got {batch_size}")
    half = batch_size // 2
    idx_a, idx_b = np.arange(half), np.arange(half, batch_size)
    u_a, info_a = solve(idx_a)
    u_b, info_b = solve(idx_b)
    c_a, dc_a = couple(u_b, idx_a)
    c_b, dc_b = couple(u_a, idx_b)
    c = tf.concat([c_a, c_b], 0)
    baseline = tf.concat([leave_one_out_mean(c_a), leave_one_out_mean(c_b)], 0)
    return c, tf.concat([dc_a, dc_b], 0), baseline, [info_a, info_b]


CURVATURES = ("hessian", "gauss_newton")


class Implicit(ScoreFunction):
    """Args: solve(matvec, b) -> (u, SolverInfo), e.g. hypergrad.make_solver("cg", ...);
    curvature: H is the training loss's Hessian (indefinite during a search: CG often
    meets negative curvature) or its generalized Gauss–Newton matrix (PSD);
    jvp: how the Gauss–Newton product takes J v (ChildObjective.gauss_newton_operator:
    "reverse", exact; "central_difference", no second-order graph);
    lookahead_steps/truncate: as ScoreFunction (the rewards' K)."""

    name = "ift"
    traced_inline = False  # its second-order graphs are traced and optimized once
    needs_train_gradients = True  # the couplings' uᵀ∇_w L_train: the lookahead's gradient

    def __init__(self, solve, lookahead_steps: int = 0, truncate: int = 0,
                 curvature: str = "hessian", jvp: str = "reverse"):
        if curvature not in CURVATURES:
            raise ValueError(f"curvature must be one of {CURVATURES}, got {curvature!r}")
        if jvp not in JVPS:
            raise ValueError(f"jvp must be one of {JVPS}, got {jvp!r}")
        super().__init__(lookahead_steps, truncate)
        self.solve = solve
        self.curvature = curvature
        self.jvp = jvp
        # one traced graph each for both halves, called from Python (traced_inline): the
        # costly graphs to trace and to optimize
        self._solve_half = tf.function(self._solve_half_eager, autograph=False)
        self._couple_half = tf.function(self._couple_half_eager, autograph=False)
        self._child_gradients = tf.function(self._child_gradients_eager, autograph=False)

    def _child_gradients_eager(self, objective, children, x, y):
        """[n, P]: ∇_w of the mean cross-entropy of each child on (x, y) (the validation
        batch: the solves' right-hand sides), flattened in order."""
        params = objective.weights()
        like = tf.TensorSpec([hypergrad.num_elements(params)], tf.float32)
        return tf.map_fn(lambda a: hypergrad.flatten(hypergrad.gradient(
            lambda p: objective.val_loss(p, a, x, y), params)[1]), children,
            fn_output_signature=like)

    def _solve_half_eager(self, objective, children, values, val_gradient, x_tr, y_tr):
        """(u, SolverInfo) of (E H + δI) u = E ∇_w L_val (val_gradient, 1-D) over the
        children given, u a 1-D vector over the weights flattened in order: the solver's
        loop and the products carry one tensor, not one per weight (a smaller graph to
        trace and optimize, and fewer ops per CG iteration). The Gauss–Newton operator
        tapes the children's forward pass at w once, before the solver's loop."""
        params = objective.weights()
        if self.curvature == "gauss_newton":
            product = objective.gauss_newton_operator(params, children, values, x_tr,
                                                      jvp=self.jvp)
        else:
            like = tf.TensorSpec(val_gradient.shape, tf.float32)

            def product(v):  # the mean over the children of their Hessian-vector products
                return tf.reduce_mean(tf.map_fn(lambda a: hypergrad.flatten(hypergrad.hvp(
                    lambda p: objective.train_loss(p, a[0], a[1], x_tr, y_tr), params,
                    hypergrad.unflatten(v, params))), (children, values),
                    fn_output_signature=like), 0)
        u, info = self.solve(lambda v: [product(v[0])], [val_gradient])
        return u[0], info

    def _couple_half_eager(self, objective, children, values, u, train_gradients):
        """(c, ∂c/∂h) per child, c = uᵀ∇_w L_train (train_gradients, the lookahead's): only
        the penalty (ChildObjective.train_loss = val_loss + child_penalty) reads h, so only
        it goes through ift_coupling's nested tapes, and no supernet pass is traced here."""
        params = objective.weights()
        _, dc = tf.map_fn(lambda a: ift_coupling(
            lambda p, h: objective.child_penalty(p, a[0], h),
            params, u, a[1]), (children, values), fn_output_signature=(
                tf.TensorSpec([], tf.float32), tf.TensorSpec(values.shape[1:], tf.float32)))
        return tf.linalg.matvec(train_gradients, u), dc

    def terms(self, objective, children, values, val_batch, train_batch,
              train_gradients=None):
        if train_gradients is None:
            raise ValueError("the IFT couples each child through its ∇_w L_train on the "
                             "lookahead batch: pass batch_losses's train_gradients (evaluate "
                             "and ControllerPhase do)")
        batch = children.shape[0]

        def half(idx):
            return tf.gather(children, idx), tf.gather(values, idx)

        val_gradients = self._child_gradients(objective, children, *val_batch)
        c, dc, baseline, infos = ift_cross_fit(
            lambda idx: self._solve_half(objective, *half(idx), tf.reduce_mean(
                tf.gather(val_gradients, idx), 0), *train_batch),
            lambda u, idx: self._couple_half(objective, *half(idx), u,
                                             tf.gather(train_gradients, idx)), batch)
        solved = tf.reduce_all([i.converged & ~i.negative_curvature for i in infos])
        finite = tf.reduce_all(tf.math.is_finite(c)) & tf.reduce_all(tf.math.is_finite(dc))
        apply = solved & finite
        terms = ResponseTerms(tf.where(apply, -(c - baseline), 0.0),
                              tf.where(apply, -dc, 0.0), score_continuous=True)
        logs = {"response/cg_iterations": tf.reduce_mean([tf.cast(i.iterations, tf.float32)
                                                          for i in infos]),
                "response/cg_residual": tf.reduce_mean([i.residual_norm for i in infos]),
                "response/cg_converged": tf.reduce_mean(
                    [tf.cast(i.converged, tf.float32) for i in infos]),
                "response/cg_negative_curvature": tf.reduce_mean(
                    [tf.cast(i.negative_curvature, tf.float32) for i in infos]),
                "response/cg_diverged": tf.reduce_mean(
                    [tf.cast(i.diverged, tf.float32) for i in infos]),
                "response/skipped": 1.0 - tf.cast(apply, tf.float32),
                "response/dcoupling_dvalues_mean": tf.reduce_mean(dc, 0)}
        return terms, logs
