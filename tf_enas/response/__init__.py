"""Estimators of the controller gradient ∇_φ J_K, J_K(φ) = E_{(a,h)∼π_φ} L_val(a, w_K(a, h)).

Each estimator evaluates a batch of sampled children (their validation losses after the
K-step lookahead) and returns the `ResponseTerms` it adds to REINFORCE; the controller
update is the same code for all of them. A new estimator is one new class with an
`evaluate` method (see ScoreFunction), registered here by name.
"""
from tf_enas.response.implicit import CURVATURES, JVPS, Implicit, ift_coupling, ift_cross_fit
from tf_enas.response.score_function import (CategoricalScoreFunction, ScoreFunction,
                                             leave_one_out_mean)
from tf_enas.response.unrolled import Unrolled

ESTIMATORS = {"none": ScoreFunction, "unrolled": Unrolled, "ift": Implicit}

__all__ = ["CURVATURES", "CategoricalScoreFunction", "ESTIMATORS", "Implicit", "JVPS",
           "ScoreFunction", "Unrolled", "ift_coupling", "ift_cross_fit", "leave_one_out_mean"]
