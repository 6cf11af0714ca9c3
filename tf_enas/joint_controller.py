"""The joint (multi-task) controller: architecture and optimizer decisions in one LSTM.

The categorical decisions of a SearchSpace come first (exactly as in `Controller`), then
each continuous hyperparameter h_c, read from the same hidden state:

    z_c ~ Normal(μ_c, σ_c),  μ_c = m_c + r_c·tanh(w_cᵀ s),  σ_c = σ_lo + (σ_hi − σ_lo)·sigmoid(v_cᵀ s + b_c)
    h_c = exp(z_c) ("log": learning rate, weight decay) or sigmoid(z_c) ("logit": momentum, …)

with s the LSTM output and [m_c − r_c, m_c + r_c] the decision's range on the z scale.
Sampling is reparameterized, z = μ + σ·ε with ε ~ N(0, 1), so h is a differentiable
function of φ given the discrete decisions and ε (pathwise gradients). Each continuous
decision's LSTM step reads a learned input embedding, not the previous sample, so the
continuous decisions are conditionally independent given the categorical ones (they still
depend on them through the shared state): then a score-function term and a pathwise term
can be taken in the same walk without one leaking into the other. Log-probabilities of
continuous decisions are densities of z (the Jacobian of h = T(z) does not depend on φ).
"""
from __future__ import annotations

import collections
import dataclasses
import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tf_enas.controller import Controller, ControllerConfig
from tf_enas.space import SearchSpace

tfd = tfp.distributions

TRANSFORMS = ("log", "logit")


@dataclasses.dataclass(frozen=True)
class ContinuousDecision:
    """h = T(z), z ~ Normal(μ, σ) with μ in [T⁻¹(low), T⁻¹(high)] and σ in [sigma_min, sigma_max]."""

    name: str
    low: float
    high: float
    transform: str = "log"
    sigma_min: float = 0.05
    sigma_max: float = 1.0
    sigma_init: float = 0.5

    def validate(self):
        if self.transform not in TRANSFORMS:
            raise ValueError(f"continuous decision {self.name!r}: transform must be one of "
                             f"{TRANSFORMS}, got {self.transform!r}")
        ok = 0 < self.low < self.high and (self.transform == "log" or self.high < 1)
        if not ok:
            raise ValueError(f"continuous decision {self.name!r}: need 0 < low < high"
                             f"{' < 1' if self.transform == 'logit' else ''}, got "
                             f"low={self.low}, high={self.high}")
        if not 0 < self.sigma_min < self.sigma_init < self.sigma_max:
            raise ValueError(f"continuous decision {self.name!r}: need 0 < sigma_min < "
                             f"sigma_init < sigma_max, got {self.sigma_min}, "
                             f"{self.sigma_init}, {self.sigma_max}")
        return self

    def to_z(self, h):
        """T⁻¹(h): log h or logit h."""
        if self.transform == "log":
            return tf.math.log(h)
        return tf.math.log(h) - tf.math.log1p(-h)

    def from_z(self, z):
        """T(z): exp z or sigmoid z."""
        return tf.exp(z) if self.transform == "log" else tf.sigmoid(z)

    def _z_float(self, v):
        return math.log(v) if self.transform == "log" else math.log(v / (1 - v))

    @property
    def center(self) -> float:
        return 0.5 * (self._z_float(self.low) + self._z_float(self.high))

    @property
    def half_range(self) -> float:
        return 0.5 * (self._z_float(self.high) - self._z_float(self.low))

    def get_config(self) -> dict:
        return dataclasses.asdict(self)


# The optimizer hyperparameters the joint search knows, with their default ranges.
DEFAULTS = {
    "learning_rate": ContinuousDecision("learning_rate", 1e-3, 0.3, "log"),
    "momentum": ContinuousDecision("momentum", 0.5, 0.98, "logit"),
    "weight_decay": ContinuousDecision("weight_decay", 1e-6, 1e-2, "log"),
    "dropout": ContinuousDecision("dropout", 0.01, 0.5, "logit"),
    "label_smoothing": ContinuousDecision("label_smoothing", 1e-3, 0.3, "logit"),
}


JointParts = collections.namedtuple("JointParts", [
    "children", "values", "discrete_log_prob", "continuous_log_prob", "entropy", "skip_kl",
    "mu", "sigma"])
JointParts.__doc__ = """One walk of the joint controller: children int32 [B, D], values
float32 [B, C] (h), discrete_log_prob [B] (Σ over categorical decisions), continuous_log_prob
[B] (Σ over continuous ones, densities of z), entropy [B] (all decisions), skip_kl [B],
mu / sigma [B, C] (parameters of z)."""


class JointController(Controller):
    """`Controller` followed by continuous decisions in the same LSTM sequence.

    Args:
      space: the categorical decisions (architecture and any grid choices).
      continuous: ContinuousDecisions emitted after them, in order (names must not clash
        with the space's choices).
    """

    def __init__(self, space: SearchSpace, continuous=(), config: ControllerConfig | None = None,
                 seed: int = 0, name: str = "joint_controller"):
        super().__init__(space, config, seed=seed, name=name)
        self.continuous = tuple(d.validate() for d in continuous)
        names = [d.name for d in self.continuous]
        clash = set(names) & set(space.choices)
        if clash or len(set(names)) != len(names):
            raise ValueError(f"continuous decisions must have unique names not among the "
                             f"space's choices, got {names} (choices {list(space.choices)})")
        n = self.config.lstm_size
        init = keras.initializers.RandomUniform(-0.1, 0.1, seed=seed + 1)
        self.w_mu, self.w_sigma, self.b_sigma, self.cont_emb = [], [], [], []
        for d in self.continuous:
            frac = (d.sigma_init - d.sigma_min) / (d.sigma_max - d.sigma_min)
            self.w_mu.append(tf.Variable(init((n, 1)), name=f"w_mu_{d.name}"))
            self.w_sigma.append(tf.Variable(init((n, 1)), name=f"w_sigma_{d.name}"))
            self.b_sigma.append(tf.Variable(math.log(frac / (1 - frac)),
                                            name=f"b_sigma_{d.name}"))
            self.cont_emb.append(tf.Variable(init((1, n)), name=f"emb_{d.name}"))
        # The base built Adam before these variables existed: rebuild it over all of them.
        self.optimizer = keras.optimizers.Adam(self.config.learning_rate)
        self.optimizer.build(self.trainable_variables)

    @property
    def continuous_names(self) -> tuple:
        return tuple(d.name for d in self.continuous)

    def walk(self, batch_size, children=None, values=None, seeds=None, pathwise=False):
        """All decisions: samples (children None) or scores the given (children, values).

        pathwise=True (with values): h is recomputed as T(μ_φ + σ_φ·ε) with the noise
        ε = (T⁻¹(h) − μ)/σ held constant, numerically equal to the given values but
        differentiable in φ (the reparameterization gradient). Returns JointParts.
        """
        num_d = len(self.space)
        base_seeds = None if seeds is None else seeds[:, :num_d]
        acts, log_probs, entropies, skip_kl, (state, x) = self._run(
            batch_size, children=children, seeds=base_seeds, return_state=True)
        hs, c_lps, c_ents, mus, sigmas = [], [], [], [], []
        for c, d in enumerate(self.continuous):
            s, state = self._lstm(x, state)
            mu = d.center + d.half_range * tf.tanh(s @ self.w_mu[c])[:, 0]
            sigma = d.sigma_min + (d.sigma_max - d.sigma_min) * tf.sigmoid(
                s @ self.w_sigma[c] + self.b_sigma[c])[:, 0]
            if values is None:
                eps = tf.random.stateless_normal(tf.shape(mu), seed=seeds[:, num_d + c])
                z = mu + sigma * eps
            else:
                z = d.to_z(tf.cast(values[:, c], tf.float32))
                if pathwise:
                    z = mu + sigma * tf.stop_gradient((z - mu) / sigma)
            dist = tfd.Normal(mu, sigma)
            hs.append(d.from_z(z))
            c_lps.append(dist.log_prob(tf.stop_gradient(z)))  # score function: z is data
            c_ents.append(dist.entropy())
            mus.append(mu)
            sigmas.append(sigma)
            x = tf.tile(self.cont_emb[c], [batch_size, 1])
        zero = tf.zeros((batch_size,))

        def stack(xs):
            return tf.stack(xs, 1) if xs else tf.zeros((batch_size, 0))

        return JointParts(
            children=acts, values=stack(hs), discrete_log_prob=tf.reduce_sum(log_probs, 1),
            continuous_log_prob=tf.add_n(c_lps) if c_lps else zero,
            entropy=tf.reduce_sum(entropies, 1) + (tf.add_n(c_ents) if c_ents else zero),
            skip_kl=skip_kl, mu=stack(mus), sigma=stack(sigmas))

    # --- public API ------------------------------------------------------------------------
    @tf.function(autograph=False, reduce_retracing=True)
    def sample(self, batch_size=1):
        """(children int32 [B, D], values float32 [B, C]); advances the RNG."""
        seeds = tf.cast(self.rng.make_seeds(len(self.space) + len(self.continuous)), tf.int32)
        parts = self.walk(batch_size, seeds=seeds)
        return parts.children, parts.values

    @tf.function(autograph=False, reduce_retracing=True)
    def log_prob(self, children, values):
        """log π_φ(a, z) = Σ categorical log-probs + Σ Normal log-densities of z → [B]."""
        children = tf.convert_to_tensor(children, tf.int32)
        parts = self.walk(tf.shape(children)[0], children, values)
        return parts.discrete_log_prob + parts.continuous_log_prob

    def reinforce_loss(self, parts: JointParts, rewards, score_continuous=True):
        """−mean((R − b)·log π) − β_ent·mean(H) + β_skip·mean(KL) on a walk `parts`.

        score_continuous=False leaves the continuous log-densities out of the score term
        (their gradient then comes pathwise, from a response estimator).
        """
        cfg = self.config
        log_prob = parts.discrete_log_prob
        if score_continuous:
            log_prob = log_prob + parts.continuous_log_prob
        advantage = tf.stop_gradient(tf.cast(rewards, tf.float32) - self.baseline)
        return (-tf.reduce_mean(advantage * log_prob)
                - cfg.entropy_weight * tf.reduce_mean(parts.entropy)
                + cfg.skip_weight * tf.reduce_mean(parts.skip_kl))

    def update_baseline(self, rewards):
        """b ← decay·b + (1 − decay)·mean R (the first update sets b = mean R)."""
        mean_r = tf.reduce_mean(tf.cast(rewards, tf.float32))
        d = self.config.baseline_decay
        self.baseline.assign(tf.where(self.num_updates == 0, mean_r,
                                      d * self.baseline + (1 - d) * mean_r))
        return mean_r

    @tf.function(autograph=False, reduce_retracing=True)
    def update(self, children, values, rewards):
        """One REINFORCE step over all decisions (the `--response=none` controller step)."""
        children = tf.convert_to_tensor(children, tf.int32)
        mean_r = self.update_baseline(rewards)
        with tf.GradientTape() as tape:
            parts = self.walk(tf.shape(children)[0], children, values)
            loss = self.reinforce_loss(parts, rewards)
        grads = tape.gradient(loss, self.trainable_variables)
        return self.apply_gradients(grads) | {
            "controller/loss": loss, "controller/entropy": tf.reduce_mean(parts.entropy),
            "controller/reward": mean_r, "controller/baseline": self.baseline.read_value()}

    def hyperparameters(self, values) -> dict:
        """{name: float} of one child's continuous values [C]."""
        return {d.name: float(v) for d, v in zip(self.continuous, values)}

    def most_likely_values(self, child) -> dict:
        """The continuous decisions' medians T(μ) given a discrete `child` (for reports)."""
        child = tf.constant([child], tf.int32)
        values = tf.constant([[0.5 * (d.low + d.high) for d in self.continuous]], tf.float32)
        mu = self.walk(1, child, values).mu[0]
        return {d.name: float(d.from_z(mu[c])) for c, d in enumerate(self.continuous)}
