"""DensityRatioController: TPE's split by hand, the two fits against maximum-likelihood
frequencies counted from the trials, and the proposal score by enumeration."""
import numpy as np
import pytest
import tensorflow as tf

from tf_enas.controller import ControllerConfig
from tf_enas.density_ratio_controller import DensityRatioController, good_trials
from tf_enas.space import SearchSpace

SPACE = SearchSpace(choices={"x": (0, 1, 2), "y": (0, 1, 2)})


def test_good_trials_are_the_best_tenth_capped_at_25():
    np.testing.assert_array_equal(good_trials([0.1, 0.5, 0.5, 0.3]), [0, 1, 0, 0])
    r = np.arange(25.0)  # ⌈2.5⌉ = 3 best
    assert set(np.flatnonzero(good_trials(r))) == {22, 23, 24}
    assert good_trials(np.arange(400.0)).sum() == 25
    assert good_trials(np.ones(11)).tolist() == [1, 1] + [0] * 9  # ties: earlier first


def _frequencies(children, x):
    """Counted from the trials: p(x) and p(y | x)."""
    xs = children[:, 0]
    p_x = np.bincount(xs, minlength=3) / len(xs)
    p_y = np.bincount(children[xs == x, 1], minlength=3) / max((xs == x).sum(), 1)
    return p_x, p_y


def test_fits_reach_the_maximum_likelihood_frequencies_of_good_and_bad_trials():
    rng = np.random.default_rng(0)
    good = np.array([[0, 1], [0, 1], [2, 0]], np.int32)  # the 3 best of 30 (⌈30/10⌉)
    bad = np.stack([rng.choice(3, 27, p=[0.2, 0.5, 0.3]),
                    rng.choice(3, 27, p=[0.6, 0.3, 0.1])], 1).astype(np.int32)
    children = np.concatenate([bad[:10], good, bad[10:]])
    rewards = np.concatenate([np.zeros(10), [3.0, 2.0, 1.0], -np.ones(17)])
    # no logit cap, no entropy bonus: the fits' optimum is the counted frequencies
    c = DensityRatioController(SPACE, ControllerConfig(lstm_size=16, tanh_constant=None,
                                                       learning_rate=0.05,
                                                       entropy_weight=0.0), seed=1)
    for _ in range(400):
        logs = c.update(children, None, rewards)
    assert float(logs["density_ratio/good"]) == 3
    for policy, trials in ((c, good), (c.contrast, bad)):
        for x in np.unique(trials[:, 0]):
            p_x, p_y = _frequencies(trials, x)
            child = np.array([[x, 0]], np.int32)
            np.testing.assert_allclose(policy.probabilities(0, child)[0], p_x, atol=0.02)
            np.testing.assert_allclose(policy.probabilities(1, child)[0], p_y, atol=0.02)


def test_proposal_score_is_log_l_minus_log_g_by_enumeration():
    c = DensityRatioController(SPACE, ControllerConfig(lstm_size=8, tanh_constant=2.5),
                               seed=3)
    c.update(np.array([[0, 1], [2, 2], [1, 0]], np.int32), None, [1.0, 0.0, 0.5])
    configs = np.array([[x, y] for x in range(3) for y in range(3)], np.int32)

    def log_p(policy, child):
        return sum(np.log(policy.probabilities(k, child[None])[0][child[k]]) for k in (0, 1))

    expected = [log_p(c, a) - log_p(c.contrast, a) for a in configs]
    np.testing.assert_allclose(c.proposal_score(configs).numpy(), expected, rtol=1e-5,
                               atol=1e-5)
    mask = np.array([[1, 0]] * len(configs), np.float32)  # only x counts
    expected = [np.log(c.probabilities(0, a[None])[0][a[0]])
                - np.log(c.contrast.probabilities(0, a[None])[0][a[0]]) for a in configs]
    np.testing.assert_allclose(c.proposal_score(configs, mask).numpy(), expected,
                               rtol=1e-5, atol=1e-5)


def test_continuous_values_and_response_terms_are_refused():
    c = DensityRatioController(SPACE, seed=0)
    with pytest.raises(ValueError, match="categorical trials only"):
        c.update(np.zeros((2, 2), np.int32), np.ones((2, 1)), [1.0, 0.0])


def test_candidates_are_policy_draws_then_local_moves_of_the_good_trials():
    from tf_enas.density_ratio_controller import MOVE_PROB

    space = SearchSpace(choices={f"d{i}": tuple("abcde") for i in range(6)})
    c = DensityRatioController(space, seed=2)
    assert c.candidate_rows(4).shape == (4, 6)  # nothing scored yet: draws only
    children = np.array([[1, 2, 3, 4, 0, 1], [0, 0, 0, 0, 0, 0], [4, 4, 4, 4, 4, 4]],
                        np.int32)
    rows = c.candidate_rows(3000, (children, [0.5, 0.1, 0.2]))  # good: the first (⌈0.3⌉)
    assert rows.shape == (6000, 6) and rows.min() >= 0 and rows.max() <= 4
    # each decision of a move is redrawn uniformly with probability MOVE_PROB, so it
    # differs from the good trial with probability MOVE_PROB · 4/5
    changed = (rows[3000:] != children[0]).mean(0)
    se = np.sqrt(MOVE_PROB * 0.8 * (1 - MOVE_PROB * 0.8) / 3000)
    np.testing.assert_array_less(np.abs(changed - MOVE_PROB * 0.8), 4 * se)


def test_a_local_move_steps_a_numeric_grid_by_one_value():
    """A numeric grid's move goes to a neighbouring value, either way with probability ½
    (at an end of the grid: the one neighbour), where a categorical decision is redrawn."""
    from tf_enas.density_ratio_controller import MOVE_PROB

    space = SearchSpace(choices={"lr": (0.1, 0.01, 0.001, 1e-4, 1e-5), "units": (8, 16, 32),
                                 "depth": (1, 2, 3, 4, 5), "act": ("relu", "tanh", "elu")})
    c = DensityRatioController(space, seed=3)
    good = np.array([[0, 2, 2, 1]], np.int32)
    moves = c.candidate_rows(4000, (good, [1.0]))[4000:]
    changed = moves != good[0]
    se = np.sqrt(MOVE_PROB * (1 - MOVE_PROB) / 4000)
    for j, allowed in ((0, {1: 1.0}), (1, {1: 1.0}), (2, {1: 0.5, 3: 0.5})):
        values = moves[changed[:, j], j]
        assert set(values) == set(allowed)  # one grid step, never further
        for value, p in allowed.items():
            share = (values == value).mean()
            assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / len(values)) + 1e-12
        assert abs(changed[:, j].mean() - MOVE_PROB) < 4 * se  # a step always moves
    # the categorical decision: a uniform redraw (differs with probability MOVE_PROB·2/3)
    assert abs(changed[:, 3].mean() - MOVE_PROB * 2 / 3) < 4 * se


@pytest.mark.parametrize("values, expected", [
    ((8, 16, 32), True), ((0.1, 0.01, 0.001), True), ((1, 2), False), ((1, 3, 2), False),
    (("relu", "tanh", "elu"), False), ((False, True, True), False), ((1, 1, 2), False)])
def test_ordinal_grids_are_three_or_more_numbers_in_order(values, expected):
    from tf_enas.density_ratio_controller import ordinal

    assert ordinal(values) is expected


def test_steps_in_one_call_equal_single_steps_and_trace_once():
    """update_steps(..., steps=4) is four Adam steps (the same variables as four calls of
    one step), and the fit is traced once for every number of trials and of steps."""
    rng = np.random.default_rng(2)
    children = rng.integers(0, 3, (12, 2)).astype(np.int32)
    rewards = rng.normal(size=12)
    config = ControllerConfig(lstm_size=8, tanh_constant=None)
    once, singly = (DensityRatioController(SPACE, config, seed=3) for _ in range(2))
    once.update_steps(children, rewards, steps=4)
    for _ in range(4):
        singly.update_steps(children, rewards, steps=1)
    for a, b in zip(once.variables, singly.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    for n in (3, 7, 25):
        once.update_steps(children[:n % 12 + 1], rewards[:n % 12 + 1], steps=n)
    assert once._fit.experimental_get_tracing_count() == 1


def test_a_fit_from_the_same_state_gives_the_same_bits():
    """One seed, one result: the same fit from the same state and trials, repeated, leaves
    bit-identical variables. (The LSTM's `x @ W + b` gave a bias gradient whose last bits
    varied between calls for 2-5 trials; seeded tabular searches diverged.)"""
    space = SearchSpace(choices={k: tuple(range(4)) for k in "abcdef"})
    ctrl = DensityRatioController(space, ControllerConfig(lstm_size=32), seed=1)
    state = ctrl.get_state()
    children = np.array([[0, 1, 2, 3, 0, 1], [3, 2, 1, 0, 3, 2]], np.int32)
    results = set()
    for _ in range(40):
        ctrl.set_state(state)
        ctrl.update_steps(children, np.array([1.0, 0.0]), steps=3)
        results.add(b"".join(v.numpy().tobytes() for v in ctrl.trainable_variables))
    assert len(results) == 1


def test_fit_batch_loss_is_an_unbiased_estimate_of_the_full_fit_loss():
    """With fit_batch = k each fitting loss is over a fresh random k of the trials: its
    mean over many draws is the loss over all of them (within 4 standard errors), and its
    spread is that of a k-subset mean, not 0 (one fixed subset) or the full set's."""
    rng = np.random.default_rng(4)
    trials = rng.integers(0, 3, (40, 2)).astype(np.int32)
    mask = np.ones(trials.shape, np.float32)
    c = DensityRatioController(SPACE, ControllerConfig(lstm_size=8, tanh_constant=None),
                               seed=5, fit_batch=8)
    subset_loss = tf.function(lambda: c._fit_loss(c.contrast, trials, mask))
    draws = np.array([float(subset_loss()) for _ in range(3000)])
    c.fit_batch = None
    full = float(c._fit_loss(c.contrast, trials, mask))
    per_trial = np.array([float(c._fit_loss(c.contrast, trials[i:i + 1], mask[:1]))
                          for i in range(len(trials))])
    # a k-subset mean drawn without replacement: variance σ²/k·(n − k)/(n − 1)
    expected_std = per_trial.std() * np.sqrt((40 - 8) / (8 * 39))
    assert abs(draws.mean() - full) < 4 * draws.std() / np.sqrt(len(draws))
    np.testing.assert_allclose(draws.std(), expected_std, rtol=0.1)


def test_fit_batch_above_the_trial_count_pads_without_changing_the_loss():
    """Fewer trials than fit_batch: the subset is all of them, padded to fit_batch rows of
    mask 0 (a static shape); the loss equals the unpadded loss over every trial."""
    rng = np.random.default_rng(6)
    trials = rng.integers(0, 3, (5, 2)).astype(np.int32)
    mask = np.array([[1, 1], [1, 0], [1, 1], [0, 1], [1, 1]], np.float32)
    c = DensityRatioController(SPACE, ControllerConfig(lstm_size=8, tanh_constant=None),
                               seed=5, fit_batch=8)
    padded = float(tf.function(lambda: c._fit_loss(c, trials, mask))())
    c.fit_batch = None
    np.testing.assert_allclose(padded, float(c._fit_loss(c, trials, mask)), rtol=1e-6)


def test_fit_batch_must_be_a_positive_int_of_the_density_ratio_rule():
    from tf_enas.tuner.policy_oracle import PolicyUpdate

    assert PolicyUpdate(rule="density_ratio", fit_batch=4).controller(
        SPACE, None, 0).fit_batch == 4
    for bad in (dict(rule="density_ratio", fit_batch=0), dict(fit_batch=8)):
        with pytest.raises(ValueError, match="fit_batch"):
            PolicyUpdate(**bad).validate()
