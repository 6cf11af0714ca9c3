"""Variance of the controller gradient at equal wall time, per estimator (the seed paper's
claim, "more efficient", measured directly).

A joint search (K = 1) is run for `warmup_epochs`; then, with the weights and the policy
frozen there, each estimator gives as many estimates of ∇_φ J as fit in `budget_s` (after
one traced warm-up call), on fresh children and batches. For the continuous decisions'
head variables (w_mu, w_sigma, b_sigma) it reports the per-coordinate standard deviation
of one estimate and the signal-to-noise ratio of the budget's mean estimate,

    SNR_i = |mean_i| / (std_i / √n)     (n = estimates that fit in the budget),

median over coordinates. SNR ≫ 1 means the budget's average points in a reliable direction.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np

from tf_enas import hypergrad
from tf_enas import response
from tf_enas.controller import ControllerConfig
from tf_enas.retrain import RetrainConfig
from tf_enas.search import Search, SearchConfig

CONTINUOUS_HEADS = ("w_mu_", "w_sigma_", "b_sigma_")


def estimators(lookahead_steps: int = 1) -> dict:
    solve = hypergrad.make_solver("cg", 5, 0.2, 0.1)
    return {
        "score function (none)": response.ScoreFunction(lookahead_steps),
        "unrolled": response.Unrolled(lookahead_steps),
        "ift, Hessian": response.Implicit(solve, lookahead_steps, curvature="hessian"),
        "ift, Gauss-Newton": response.Implicit(solve, lookahead_steps,
                                               curvature="gauss_newton"),
    }


def search_config(quick: bool, seed: int = 0) -> SearchConfig:
    return SearchConfig(
        dataset="mnist1d", seed=seed, num_layers=2 if quick else 4, width=8 if quick else 32,
        continuous=("learning_rate", "momentum", "weight_decay"),
        ranges={"learning_rate": (1e-3, 1.0), "weight_decay": (1e-6, 1e-1)},
        reward="loss", lookahead_steps=1, controller_steps=5, controller_batch=8,
        controller=ControllerConfig(lstm_size=32, entropy_weight=0.0), epochs=1 if quick else 3,
        retrain=RetrainConfig(optimizer="sgd"))


def measure(quick: bool = False, budget_s: float = 60.0, seed: int = 0) -> list[dict]:
    """One row per estimator: estimates, seconds per estimate, median std and SNR."""
    config = search_config(quick, seed)
    with tempfile.TemporaryDirectory() as out:
        search = Search(config, out, verbose=0)
        search.search()
        variables = search.controller.trainable_variables
        heads = [i for i, v in enumerate(variables) if v.name.startswith(CONTINUOUS_HEADS)]
        x, y = search.x_val[:config.val_batch_size], search.y_val[:config.val_batch_size]
        rows = []
        for name, estimator in estimators(config.lookahead_steps).items():
            search.phase.gradient_estimate(x, y, estimator)  # trace
            samples, start = [], time.time()
            while time.time() - start < budget_s or len(samples) < 3:
                grads = search.phase.gradient_estimate(x, y, estimator)
                samples.append(np.concatenate([np.ravel(grads[i].numpy()) for i in heads]))
            seconds = time.time() - start
            est = np.stack(samples)
            std = est.std(0, ddof=1)
            snr = np.abs(est.mean(0)) / (std / np.sqrt(len(est)) + 1e-30)
            rows.append({"estimator": name, "estimates": len(est),
                         "seconds_per_estimate": seconds / len(est),
                         "median_std": float(np.median(std)),
                         "median_snr_at_budget": float(np.median(snr))})
        search.close()
    base = rows[0]
    for r in rows:
        r["snr_ratio_to_score"] = r["median_snr_at_budget"] / base["median_snr_at_budget"]
    return rows


def markdown(rows: list[dict], budget_s: float) -> str:
    out = [f"Estimates of ∇_φ J for the continuous decisions' heads in {budget_s:g} s each, "
           "mid-search (MNIST-1D joint search, K = 1).", "",
           "| estimator | estimates | s / estimate | median std of one estimate | "
           "median SNR of the budget's mean | SNR / score function's |",
           "|---|---:|---:|---:|---:|---:|"]
    out += [f"| {r['estimator']} | {r['estimates']} | {r['seconds_per_estimate']:.3f} | "
            f"{r['median_std']:.3g} | {r['median_snr_at_budget']:.2f} | "
            f"{r['snr_ratio_to_score']:.2f} |" for r in rows]
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    budget = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    quick = "--quick" in sys.argv
    print(markdown(measure(quick=quick, budget_s=budget), budget))
