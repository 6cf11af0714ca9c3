"""The estimators on the real supernet, through their `evaluate` (the code the search runs):
the unrolled K = 1 derivatives against a closed form (momentum included: the lookahead
starts from the shared velocity), and the cross-fitted IFT terms against a dense
(H + δI)⁻¹ solve built from HVP columns of Python-summed per-child losses."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tf_enas import data, hypergrad
from tf_enas.response import leave_one_out_mean
from tf_enas.response.score_function import batch_losses
from tf_enas.search import Search
from tests.test_search_joint import joint_config


@pytest.fixture(scope="module")
def splits():
    return data.load("mnist1d", seed=0, val_fraction=0.1, num_samples=600)


def _batches(splits):
    val = (tf.constant(splits.x_val[:32]), tf.constant(splits.y_val[:32]))
    train = (tf.constant(splits.x_train[:32]), tf.constant(splits.y_train[:32]))
    return val, train


def _grad(fn, params):
    return hypergrad.gradient(fn, params)[1]


def _dot(a, b):
    return sum(float(tf.reduce_sum(x * y)) for x, y in zip(a, b))


@pytest.mark.parametrize("per, memory", [("model", "full"), ("model", "checkpointed"),
                                         ("layer", "full"), ("tensor", "full")])
def test_unrolled_k1_matches_closed_form_with_shared_velocity(tmp_path, splits, per, memory):
    """w₁ = w − η·s·(μv + g₀): ∂L_val/∂η = −s·∇L_val(w₁)·(μv + g₀),
    ∂L_val/∂μ = −η·s·∇L_val(w₁)·v,
    ∂L_val/∂λ_g = −η·s·∇L_val(w₁)·2w_g (g₀ = ∇CE + 2λ_g w on the decayed kernels of
    group g: all kernels, a layer group's, or one kernel tensor)."""
    search = Search(joint_config(response="unrolled", weight_decay_per=per,
                                 lookahead_memory=memory),
                    str(tmp_path), splits=splits, verbose=0)
    rng = np.random.default_rng(0)
    for v in search.shared.velocity:  # a shared velocity as a search would have left it
        v.assign(0.1 * rng.normal(size=v.shape).astype(np.float32))
    val, train = _batches(splits)
    children, values = search.controller.sample(2)
    obj = search.shared.objective
    params = obj.weights()
    velocity = [tf.convert_to_tensor(v) for v in search.shared.velocity]
    _, _, terms, _ = search.phase.response.evaluate(obj, (params, velocity), children, values, val,
                                              train)
    scale = float(search.shared.lr_scale())
    # each weight's group by hand from its path supernet/<group>/...: the decision's key
    paths = [v.path for v in search.supernet.trainable_variables]
    group_of = {"model": lambda path: "",
                "layer": lambda path: "_" + path.split("/")[1],
                "tensor": lambda path: "_" + ".".join(path.split("/")[1:])}[per]
    groups = [d.name[len("weight_decay"):] for d in search.config.decisions()[2:]]
    assert len(groups) == {"model": 1, "layer": 4, "tensor": len(obj.decayed)}[per]
    assert sorted({group_of(paths[k]) for k in obj.decayed}) == sorted(groups)
    for i in range(2):
        child, (lr, mom) = children[i], values[i].numpy()[:2]
        g0 = _grad(lambda p: obj.train_loss(p, child, values[i], *train), params)
        step = [mom * v + g for v, g in zip(velocity, g0)]
        w1 = [p - lr * scale * s for p, s in zip(params, step)]
        gv = _grad(lambda p: obj.val_loss(p, child, *val), w1)
        two_w = [[2 * p if k in obj.decayed and group_of(paths[k]) == group
                  else tf.zeros_like(p) for k, p in enumerate(params)] for group in groups]
        want = [-scale * _dot(gv, step), -lr * scale * _dot(gv, velocity)] + [
            -lr * scale * _dot(gv, w) for w in two_w]
        np.testing.assert_allclose(terms.dloss_dvalues[i].numpy(), want, rtol=2e-3, atol=1e-7)
    assert not terms.score_continuous and np.all(terms.score_weights.numpy() == 0)


def test_ift_terms_match_a_dense_solve(tmp_path, splits):
    """Halves {0,1} and {2,3}; u_A = (H_A + δI)⁻¹ mean_{j∈A} ∇L_val(a_j) couples the other
    half: c_i = u·∇L_train(a_i, h_i), ∂c_i/∂λ = u·2w, and ∂c_i/∂(η, μ) = 0 exactly.
    The
    estimator's terms are −(c − b) (b: leave-one-out within the half) and −∂c/∂h."""
    search = Search(joint_config(response="ift", cg_iterations=400, cg_tol=1e-6),
                    str(tmp_path), splits=splits, verbose=0)
    val, train = _batches(splits)
    children, values = search.controller.sample(4)
    obj = search.shared.objective
    params = obj.weights()
    sizes = [int(np.prod(p.shape)) for p in params]
    flat = lambda ts: np.concatenate([np.ravel(t) for t in ts]).astype(np.float64)
    n = sum(sizes)
    train_i = lambda p, i: obj.train_loss(p, children[i], values[i], *train)
    val_i = lambda p, i: obj.val_loss(p, children[i], *val)
    halves, dense = ((0, 1), (2, 3)), []
    for idx in halves:
        mean_train = lambda p: tf.add_n([train_i(p, i) for i in idx]) / len(idx)
        hvp = tf.function(lambda v: hypergrad.hvp(mean_train, params, [
            tf.reshape(t, p.shape) for t, p in zip(tf.split(v, sizes), params)]))
        h = np.stack([flat(hvp(tf.one_hot(j, n))) for j in range(n)], 1)
        np.testing.assert_allclose(h, h.T, atol=1e-3 * np.abs(h).max())
        rhs = flat(_grad(lambda p: tf.add_n([val_i(p, i) for i in idx]) / len(idx), params))
        dense.append(((h + h.T) / 2, rhs))
    damping = 1.0 + max(0.0, -min(np.linalg.eigvalsh(h).min() for h, _ in dense))
    search.phase.response.solve = hypergrad.make_solver("cg", 400, 1e-6, float(damping))
    _, _, terms, logs = search.phase.response.evaluate(
        obj, (params, [tf.convert_to_tensor(v) for v in search.shared.velocity]), children, values,
        val, train)
    assert float(logs["response/skipped"]) == 0.0
    c, dc = np.zeros(4), np.zeros((4, 3))
    two_w = flat([2 * p if k in obj.decayed else tf.zeros_like(p)
                  for k, p in enumerate(params)])
    for (h, rhs), other in zip(dense, halves[::-1]):
        u = np.linalg.solve(h + damping * np.eye(n), rhs)
        for i in other:
            c[i] = u @ flat(_grad(lambda p: train_i(p, i), params))
            dc[i, 2] = u @ two_w
    b = np.concatenate([leave_one_out_mean(c[:2]).numpy(), leave_one_out_mean(c[2:]).numpy()])
    np.testing.assert_allclose(terms.score_weights.numpy(), -(c - b), rtol=5e-3, atol=1e-6)
    np.testing.assert_allclose(terms.dloss_dvalues.numpy(), -dc, rtol=5e-3, atol=1e-7)
    assert np.all(terms.dloss_dvalues.numpy()[:, :2] == 0.0)  # learning rate, momentum


def test_lookahead_given_its_first_gradient_scores_the_same(tmp_path, splits):
    """batch_losses with the training gradients (an IFT search's scoring) gives the rewards
    of the lookahead that computes its own first gradient, at K = 2."""
    search = Search(joint_config(response="ift", lookahead_steps=2), str(tmp_path),
                    splits=splits, verbose=0)
    val, train = _batches(splits)
    children, values = search.controller.sample(3)
    args = (search.shared.objective, search.shared.state(), children, values, val, train)
    plain = batch_losses(2, 0, False)(*args)
    with_gradients = batch_losses(2, 0, True)(*args)
    for a, b in zip(plain, with_gradients[:2]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    assert with_gradients[2].shape == (3, sum(
        v.shape.num_elements() for v in search.supernet.trainable_variables))


def test_ift_coupling_gives_each_tensor_its_own_gradient(tmp_path, splits):
    """Per-tensor decay, through the estimator's coupling (what its `evaluate` runs, with the
    training gradients of the rewards' lookahead) and an arbitrary u:
    c_i = u·∇_w L_train(a_i, h_i), ∂c_i/∂λ_k = 2u_k·W_k for kernel k alone (its decision
    found by hand from its path), ∂c_i/∂(η, μ) = 0."""
    search = Search(joint_config(response="ift", weight_decay_per="tensor"), str(tmp_path),
                    splits=splits, verbose=0)
    val, train = _batches(splits)
    children, values = search.controller.sample(2)
    obj = search.shared.objective
    params = obj.weights()
    rng = np.random.default_rng(0)
    u = [tf.constant(rng.normal(size=p.shape).astype(np.float32)) for p in params]
    ift = search.phase.response
    # the training gradients the search couples with: its rewards' lookahead's
    _, _, train_gradients = batch_losses(ift.lookahead_steps, ift.truncate, True)(
        obj, search.shared.state(), children, values, val, train)
    c, dc = ift._couple_half(obj, children, values, hypergrad.flatten(u), train_gradients)
    names = [d.name for d in search.config.decisions()]
    paths = [v.path.split("/") for v in search.supernet.trainable_variables]
    kernels = [k for k, p in enumerate(paths)
               if p[-1] in ("kernel", "depthwise_kernel", "pointwise_kernel")]
    assert len(names) == 2 + len(kernels) == 8
    want_dc = np.zeros(len(names))
    for k in kernels:
        want_dc[names.index("weight_decay_" + ".".join(paths[k][1:]))] = 2 * _dot([u[k]],
                                                                               [params[k]])
    assert np.all(want_dc[2:] != 0)
    for i in range(2):
        want_c = _dot(u, _grad(lambda p: obj.train_loss(p, children[i], values[i], *train),
                               params))
        np.testing.assert_allclose(float(c[i]), want_c, rtol=1e-4)
        np.testing.assert_allclose(dc[i].numpy(), want_dc, rtol=1e-4, atol=1e-6)


def test_unconverged_ift_solve_is_not_applied(tmp_path, splits):
    search = Search(joint_config(response="ift", cg_iterations=1, cg_tol=1e-9),
                    str(tmp_path), splits=splits, verbose=0)
    val, train = _batches(splits)
    children, values = search.controller.sample(4)
    state = search.shared.state()
    _, _, terms, logs = search.phase.response.evaluate(search.shared.objective, state,
                                                       children, values, val, train)
    assert float(logs["response/skipped"]) == 1.0
    assert np.all(terms.score_weights.numpy() == 0) and np.all(terms.dloss_dvalues.numpy() == 0)


def test_gauss_newton_ift_solves_and_applies(tmp_path, splits):
    """With the PSD Gauss–Newton matrix CG meets no negative curvature and converges, so the
    response is applied; the Hessian solve at the same settings is not (indefinite H)."""
    val, train = _batches(splits)
    skipped = {}
    for curvature in ("gauss_newton", "hessian"):
        search = Search(joint_config(response="ift", curvature=curvature, cg_iterations=50,
                                     cg_tol=1e-2, cg_damping=1e-3),
                        str(tmp_path / curvature), splits=splits, verbose=0)
        children, values = search.controller.sample(4)
        _, _, terms, logs = search.phase.response.evaluate(
            search.shared.objective, search.shared.state(), children, values, val, train)
        skipped[curvature] = (float(logs["response/skipped"]),
                              float(logs["response/cg_negative_curvature"]))
        search.close()
    assert skipped["gauss_newton"] == (0.0, 0.0)
    assert skipped["hessian"][1] > 0, skipped


def test_central_difference_gauss_newton_gives_the_exact_ift_terms(tmp_path, splits):
    """The search's IFT estimator with --gauss_newton_jvp=central_difference gives the
    response terms of the exact product, to 2%."""
    config = joint_config(response="ift", curvature="gauss_newton", cg_iterations=50,
                          cg_tol=1e-3, cg_damping=0.1)
    search = Search(config, str(tmp_path), splits=splits, verbose=0)
    val, train = _batches(splits)
    children, values = search.controller.sample(4)
    out = {}
    for jvp in ("reverse", "central_difference"):
        ift = dataclasses.replace(config, gauss_newton_jvp=jvp).estimator()
        _, _, terms, logs = ift.evaluate(search.shared.objective, search.shared.state(),
                                         children, values, val, train)
        assert float(logs["response/cg_converged"]) == 1.0
        assert float(logs["response/skipped"]) == 0.0
        out[jvp] = terms.score_weights.numpy(), terms.dloss_dvalues.numpy()
    for exact, approx in zip(out["reverse"], out["central_difference"]):
        assert np.linalg.norm(approx - exact) <= 2e-2 * np.linalg.norm(exact)


def test_ift_search_steps_from_python_equal_traced_steps_and_trace_once(tmp_path, splits):
    """A search whose response is the IFT runs every controller step from Python (its
    second-order functions are traced and optimized once per process, not once per
    caller, and the rewards' lookahead is one traced function for both kinds of step): an
    IFT step and a score-only step update the controller exactly as the same steps traced
    whole; the lookahead and the solve are traced once over two IFT steps and a score-only
    step."""
    config = joint_config(response="ift", curvature="gauss_newton", cg_iterations=30,
                          cg_tol=0.1, cg_damping=0.1)
    searches = [Search(config, str(tmp_path / name), splits=splits, verbose=0)
                for name in ("python", "traced")]
    val, _ = _batches(splits)
    python, traced = (s.phase for s in searches)
    assert not python.response.traced_inline
    for estimator in ("response", "score_only"):
        logs = [python._python_step(*val, getattr(python, estimator)),
                traced._step(*val, getattr(traced, estimator))]
        if estimator == "response":
            assert float(logs[0]["response/skipped"]) == 0.0  # the response was applied
        np.testing.assert_allclose(float(logs[0]["controller/val_loss"]),
                                   float(logs[1]["controller/val_loss"]), rtol=1e-6)
        for a, b in zip(*(s.controller.trainable_variables for s in searches)):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    python._python_step(*val, python.response)
    assert python._score_batch.experimental_get_tracing_count() == 1
    assert python.response._solve_half.experimental_get_tracing_count() == 1
    # the validation and training batches' per-child gradients: one trace for both sizes
    assert python.response._child_gradients.experimental_get_tracing_count() == 1
