"""Variance of the controller gradient at equal wall time, per estimator (the seed paper's
claim, "more efficient", measured directly).

A joint search (K = 1) is run for `warmup_epochs`; then, with the weights and the policy
frozen there, each estimator gives as many estimates of ∇_φ J as fit in `budget_s` (after
one traced warm-up call), on fresh children and batches. For the continuous decisions'
head variables (w_mu, w_sigma, b_sigma) it reports the per-coordinate standard deviation
of one estimate and the signal-to-noise ratio of the budget's mean estimate,

    SNR_i = |mean_i| / (std_i / √n)     (n = estimates that fit in the budget),

median over coordinates. SNR ≫ 1 means the budget's average points in a reliable direction.

A search that computes the unrolled response on every n-th step (`response_every`) updates
the policy with cycles of n steps; `schedules` composes each cycle's mean estimate from the
measured single-step estimates (the cycle's time from their measured seconds):
pathwise-only, the product's rule (n·pathwise on the response step, the categorical-only
score function between), and the rule of stop 35 and before (the full score function
between, the pathwise term unweighted).
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
        "score function, categorical only": response.CategoricalScoreFunction(lookahead_steps),
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


def _row(name, samples, seconds, budget_s):
    """Median std of one estimate and median SNR of the mean of the estimates (or cycles)
    that fit in budget_s, `seconds` each."""
    std = samples.std(0, ddof=1)
    mean = np.abs(samples.mean(0))
    snr = np.where(std > 0, mean / np.where(std > 0, std, 1.0), np.nan) * np.sqrt(
        budget_s / seconds)
    return {"estimator": name, "estimates": len(samples), "seconds_per_estimate": seconds,
            "median_std": float(np.median(std)),
            "median_snr_at_budget": float(np.nanmedian(snr)) if np.isfinite(snr).any()
            else float("nan")}


def schedules(samples: dict, seconds: dict, budget_s: float, every=(2, 3, 5)) -> list[dict]:
    """Rows for the unrolled response on every n-th step: cycles of one pathwise estimate
    and n − 1 score-function ones, composed from the measured single-step estimates."""
    rows = []
    pathwise = samples["unrolled"]
    for n in every:
        for label, between, weight in (
                ("this rule", "score function, categorical only", n),
                ("stop 35's rule", "score function (none)", 1)):
            others = samples[between]
            cycles = min(len(pathwise), len(others) // (n - 1))
            mean = (weight * pathwise[:cycles] + others[:cycles * (n - 1)].reshape(
                cycles, n - 1, -1).sum(1)) / n
            rows.append(_row(f"unrolled on 1 step in {n}, {label}", mean,
                             (n - 1) * seconds[between] + seconds["unrolled"], budget_s))
    return rows


def measure(quick: bool = False, budget_s: float = 60.0, seed: int = 0) -> list[dict]:
    """One row per estimator (estimates, seconds per estimate, median std and SNR), then
    the `schedules` rows."""
    config = search_config(quick, seed)
    with tempfile.TemporaryDirectory() as out:
        search = Search(config, out, verbose=0)
        search.search()
        variables = search.controller.trainable_variables
        heads = [i for i, v in enumerate(variables) if v.name.startswith(CONTINUOUS_HEADS)]
        x, y = search.x_val[:config.val_batch_size], search.y_val[:config.val_batch_size]
        samples, seconds = {}, {}
        for name, estimator in estimators(config.lookahead_steps).items():
            search.phase.gradient_estimate(x, y, estimator)  # trace
            drawn, start = [], time.time()
            while time.time() - start < budget_s or len(drawn) < 3:
                grads = search.phase.gradient_estimate(x, y, estimator)
                drawn.append(np.concatenate([np.ravel(grads[i].numpy()) for i in heads]))
            samples[name] = np.stack(drawn)
            seconds[name] = (time.time() - start) / len(drawn)
        search.close()
    rows = [_row(name, samples[name], seconds[name], budget_s) for name in samples]
    rows += schedules(samples, seconds, budget_s)
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
    out.append("")
    out.append("Cycles (the rows \"unrolled on 1 step in n\"): estimates = cycles "
               "composed, s / estimate = one cycle's seconds.")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    budget = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    quick = "--quick" in sys.argv
    print(markdown(measure(quick=quick, budget_s=budget), budget))
