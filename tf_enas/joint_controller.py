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
}


class JointController(Controller):
    """`Controller` followed by continuous decisions in the same LSTM sequence.

    Args:
      space: the categorical decisions (architecture and any grid choices).
      continuous: ContinuousDecisions emitted after them, in order (names must not clash
        with the space's choices).
    """

    def __init__(self, space: SearchSpace, continuous=(), config: ControllerConfig | None = None,
                 seed: int = 0, name: str = "joint_controller"):
        self.continuous = tuple(d.validate() for d in continuous)
        names = [d.name for d in self.continuous]
        clash = set(names) & set(space.choices)
        if clash or len(set(names)) != len(names):
            raise ValueError(f"continuous decisions must have unique names not among the "
                             f"space's choices, got {names} (choices {list(space.choices)})")
        super().__init__(space, config, seed=seed, name=name)

    @property
    def num_continuous(self) -> int:
        return len(self.continuous)

    def _build_heads(self, lstm_size, seed):
        init = keras.initializers.RandomUniform(-0.1, 0.1, seed=seed + 1)
        self.w_mu, self.w_sigma, self.b_sigma, self.cont_emb = [], [], [], []
        for d in self.continuous:
            frac = (d.sigma_init - d.sigma_min) / (d.sigma_max - d.sigma_min)
            self.w_mu.append(tf.Variable(init((lstm_size, 1)), name=f"w_mu_{d.name}"))
            self.w_sigma.append(tf.Variable(init((lstm_size, 1)), name=f"w_sigma_{d.name}"))
            self.b_sigma.append(tf.Variable(math.log(frac / (1 - frac)),
                                            name=f"b_sigma_{d.name}"))
            self.cont_emb.append(tf.Variable(init((1, lstm_size)), name=f"emb_{d.name}"))

    def _walk_more(self, batch_size, state, x, values, seeds, pathwise):
        """z_c ~ Normal(μ_c, σ_c), h_c = T(z_c); pathwise (with given values): h = T(μ + σ·ε)
        with ε = (T⁻¹(h) − μ)/σ held constant, equal to the values but differentiable in φ."""
        if not self.continuous:
            return super()._walk_more(batch_size, state, x, values, seeds, pathwise)
        hs, log_probs, entropies, locs, scales = [], [], [], [], []
        for c, d in enumerate(self.continuous):
            s, state = self._lstm(x, state)
            mu = d.center + d.half_range * tf.tanh(s @ self.w_mu[c])[:, 0]
            sigma = d.sigma_min + (d.sigma_max - d.sigma_min) * tf.sigmoid(
                s @ self.w_sigma[c] + self.b_sigma[c])[:, 0]
            if values is None:
                z = mu + sigma * tf.random.stateless_normal(tf.shape(mu), seed=seeds[:, c])
            else:
                z = d.to_z(tf.cast(values[:, c], tf.float32))
                if pathwise:
                    z = mu + sigma * tf.stop_gradient((z - mu) / sigma)
            dist = tfd.Normal(mu, sigma)
            hs.append(d.from_z(z))
            log_probs.append(dist.log_prob(tf.stop_gradient(z)))  # score function: z is data
            entropies.append(dist.entropy())
            locs.append(mu)
            scales.append(sigma)
            x = tf.tile(self.cont_emb[c], [batch_size, 1])
        return (tf.stack(hs, 1), tf.add_n(log_probs), tf.add_n(entropies),
                tf.stack(locs, 1), tf.stack(scales, 1))

    def medians(self, child) -> dict:
        """{name: T(μ)}: each continuous decision's median given a categorical `child`."""
        loc = self.walk(1, tf.constant([child], tf.int32),
                        tf.ones((1, len(self.continuous))) * 0.5).loc[0]
        return {d.name: float(d.from_z(loc[c])) for c, d in enumerate(self.continuous)}
