"""How close the IFT search's couplings come to a reference solve, against CG's relative
tolerance (the flagfile's --cg_tol): the accuracy side of the IFT step's cost.

After `epochs` search epochs with the IFT flagfile's settings (search_quality's
"joint + ift"), for each of `samples` controller batches: u_ref solves (G + δI) u = b on a
curvature of half A's children over `reference_rows` training rows, CG to 1e-3 (b: their
mean validation gradient, as the search takes it); then for each of `batches` lookahead
batches, u at every tolerance on that batch's rows alone (what a search step solves; the
iteration cap raised to 40). Each u couples half B as the search does (the estimator's own
traced functions, the lookahead's training gradients); reported per tolerance: the
relative error of c − mean(c) and of ∂c/∂h against u_ref's, mean ± standard error over
samples × batches, and the mean CG iterations.
"""
from __future__ import annotations

import dataclasses
import tempfile

import numpy as np
import tensorflow as tf

from tf_enas.benchmarks import search_quality

TOLERANCES = (0.1, 0.2, 0.3, 0.5, 0.7)


def measure(tolerances=TOLERANCES, samples: int = 5, batches: int = 5, epochs: int = 4,
            reference_rows: int = 1024, seed: int = 0) -> list[dict]:
    """One row per tolerance: c_error, c_error_se, dc_error, dc_error_se, cg_iterations."""
    cls, overrides = search_quality.weight_sharing_methods()["joint + ift"]
    config = dataclasses.replace(search_quality.search_config("mnist1d", seed, 1.0, False,
                                                              **overrides),
                                 epochs=epochs, time_budget_s=None)
    rng = np.random.default_rng(seed)
    errors = {t: [] for t in tolerances}
    with tempfile.TemporaryDirectory() as out:
        search = cls(config, out, verbose=0)
        search.search()
        objective, splits = search.shared.objective, search.splits
        reference = dataclasses.replace(config, cg_iterations=100, cg_tol=1e-3).estimator()
        estimators = {t: dataclasses.replace(config, cg_iterations=40, cg_tol=t).estimator()
                      for t in tolerances}
        val = lambda n: _draw(rng, splits.x_val, splits.y_val, n)
        train = lambda n: _draw(rng, splits.x_train, splits.y_train, n)
        for _ in range(samples):
            children, values = search.controller.sample(config.controller_batch)
            half = config.controller_batch // 2
            a, b = (children[:half], values[:half]), (children[half:], values[half:])
            rhs = tf.reduce_mean(reference._child_gradients(
                objective, a[0], *val(config.val_batch_size)), 0)
            u_ref, _ = reference._solve_half(objective, *a, rhs,
                                             *train(reference_rows))
            for _ in range(batches):
                batch = train(config.lookahead_batch_size)
                gradients = reference.scores(objective, search.shared.state(), *b, batch,
                                             batch, train_gradients=True)[2]
                c_ref, dc_ref = reference._couple_half(objective, *b, u_ref, gradients)
                for t, estimator in estimators.items():
                    u, info = estimator._solve_half(objective, *a, rhs, *batch)
                    c, dc = estimator._couple_half(objective, *b, u, gradients)
                    errors[t].append((_relative(_centred(c), _centred(c_ref)),
                                      _relative(dc, dc_ref), int(info.iterations)))
        search.close()
    result = []
    for t, e in errors.items():
        e = np.array(e)
        se = e.std(0) / np.sqrt(len(e))
        result.append({"cg_tol": t, "c_error": e[:, 0].mean(), "c_error_se": se[0],
                       "dc_error": e[:, 1].mean(), "dc_error_se": se[1],
                       "cg_iterations": e[:, 2].mean(), "n": len(e)})
    return result


def _draw(rng, x, y, n):
    idx = rng.choice(len(x), n, replace=False)
    return tf.constant(x[idx]), tf.constant(y[idx])


def _centred(c):
    return c.numpy() - c.numpy().mean()


def _relative(x, reference):
    return float(np.linalg.norm(np.asarray(x) - np.asarray(reference)) /
                 np.linalg.norm(np.asarray(reference)))


def markdown(rows: list[dict]) -> str:
    lines = ["| cg_tol | c − mean(c), relative error | ∂c/∂h, relative error | CG iterations |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {r['cg_tol']} | {r['c_error']:.3f} ± {r['c_error_se']:.3f} | "
              f"{r['dc_error']:.3f} ± {r['dc_error_se']:.3f} | {r['cg_iterations']:.1f} |"
              for r in rows]
    return "\n".join(lines)
