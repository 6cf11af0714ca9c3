"""The policy π_φ: one LSTM over every decision of a SearchSpace, in order.

Architecture and optimizer decisions share one hidden state (the multi-task controller).
Each categorical decision is a `tfp.distributions.Categorical` whose logits come from that
state:

    logits = tanh_constant · tanh(W h / temperature)

ops from a shared softmax head, skip connections by ENAS's additive attention over the
earlier layers' anchors (logit_j = vᵀ tanh(W₁ h_j + W₂ h_i), categorical over
[−logit, logit]), optimizer choices from one head per choice. A subclass adds decisions
through the hooks `_build_heads`, `_walk_cells` (before the layers) and `_walk_more` (after
them; see joint_controller.py). Training the policy is Controller's (controller.py).
"""
from __future__ import annotations

import collections
import dataclasses

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_enas.space import SearchSpace

tfd = tfp.distributions

PolicyWalk = collections.namedtuple("PolicyWalk", [
    "children", "values", "discrete_log_prob", "continuous_log_prob", "discrete_entropy",
    "continuous_entropy", "skip_kl", "loc", "scale"])
PolicyWalk.__doc__ = """One walk of the policy over a batch: children int32 [B, D], values
float32 [B, C] (continuous decisions; C = 0 for a categorical controller),
discrete_log_prob and discrete_entropy [B, D] (per categorical decision), continuous_log_prob
and continuous_entropy [B] (Σ over the continuous decisions), skip_kl [B], loc and
scale [B, C] (each continuous decision's Normal on its z scale, given the decisions before)."""


@dataclasses.dataclass
class ControllerConfig:
    lstm_size: int = 64
    temperature: float = 1.0
    tanh_constant: float | None = 1.5
    learning_rate: float = 1e-3
    baseline_decay: float = 0.99
    entropy_weight: float = 1e-4
    skip_target: float = 0.4
    skip_weight: float = 0.8
    grad_clip_norm: float | None = None

    def validate(self):
        checks = {
            "lstm_size": self.lstm_size > 0,
            "temperature": self.temperature > 0,
            "tanh_constant": self.tanh_constant is None or self.tanh_constant > 0,
            "learning_rate": self.learning_rate > 0,
            "baseline_decay": 0 <= self.baseline_decay < 1,
            "entropy_weight": self.entropy_weight >= 0,
            "skip_target": 0 < self.skip_target < 1,
            "skip_weight": self.skip_weight >= 0,
            "grad_clip_norm": self.grad_clip_norm is None or self.grad_clip_norm > 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid controller setting {bad[0]}={getattr(self, bad[0])!r}")
        return self


class Policy(tf.Module):
    """LSTM policy over `space.decisions`; children are int32 [batch, len(space)]."""

    def __init__(self, space: SearchSpace, config: ControllerConfig | None = None, seed: int = 0,
                 name: str = "policy"):
        super().__init__(name=name)
        self.space = space
        self.config = (config or ControllerConfig()).validate()
        if len(space) == 0:
            raise ValueError("the search space has no decisions")
        n = self.config.lstm_size
        init = keras.initializers.RandomUniform(-0.1, 0.1, seed=seed)

        def var(shape, name):
            return tf.Variable(init(shape), name=name)

        self.lstm_kernel = var((2 * n, 4 * n), "lstm_kernel")
        self.lstm_bias = tf.Variable(tf.zeros(4 * n), name="lstm_bias")
        self.g_emb = var((1, n), "g_emb")
        if space.num_layers:
            self.w_op = var((n, len(space.ops)), "w_op")
            self.op_emb = var((len(space.ops), n), "op_emb")
            self.w_attn_1 = var((n, n), "w_attn_1")
            self.w_attn_2 = var((n, n), "w_attn_2")
            self.v_attn = var((n, 1), "v_attn")
        self.w_choice = [var((n, len(v)), f"w_{k}") for k, v in space.choices.items()]
        self.choice_emb = [var((len(v), n), f"emb_{k}") for k, v in space.choices.items()]
        self._build_heads(n, seed)
        self.rng = tf.random.Generator.from_seed(seed)

    # --- override points ----------------------------------------------------------------
    @property
    def num_continuous(self) -> int:
        """Continuous decisions after the categorical ones (none here)."""
        return 0

    def _build_heads(self, lstm_size, seed):
        """Creates the variables of decisions that follow the categorical ones."""

    def _walk_more(self, batch_size, state, x, values, seeds, pathwise):
        """Continues the LSTM after the categorical decisions: (values [B, C],
        log_prob [B], entropy [B], loc [B, C], scale [B, C]). None here."""
        zero, empty = tf.zeros((batch_size,)), tf.zeros((batch_size, 0))
        return empty, zero, zero, empty, empty

    def _walk_cells(self, batch_size, state, x, children, seeds, actions, log_probs,
                    entropies):
        """Walks decisions that come before the macro layers (a cell space's), appending
        each one's [B, 1] action, log-prob and entropy; returns (state, x). None here."""
        return state, x

    # --- the policy ---------------------------------------------------------------------
    def _lstm(self, x, state):
        h, c = state
        # bias_add, not `+`: the broadcast add's gradient (a Sum over the batch) varied in
        # its last bits from call to call on CPU for batches of 2-5 children
        i, f, g, o = tf.split(tf.nn.bias_add(tf.concat([x, h], 1) @ self.lstm_kernel,
                                             self.lstm_bias), 4, 1)
        c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, (h, c)

    def _logits(self, raw):
        raw = raw / self.config.temperature
        if self.config.tanh_constant is not None:
            raw = self.config.tanh_constant * tf.tanh(raw)
        return raw

    def walk(self, batch_size, children=None, values=None, seeds=None, pathwise=False):
        """Walks every decision: samples them (children None; seeds [2, D + C]) or scores
        the given (children, values). pathwise=True makes given continuous values
        differentiable in φ (see JointController). Returns a PolicyWalk."""
        space, n = self.space, self.config.lstm_size
        zeros = tf.zeros((batch_size, n))
        state = (zeros, zeros)
        x = tf.tile(self.g_emb, [batch_size, 1])
        actions, log_probs, entropies, skip_kl = [], [], [], 0.0
        state, x = self._walk_cells(batch_size, state, x, children, seeds, actions,
                                    log_probs, entropies)

        def decide(logits, k):
            dist = tfd.Categorical(logits=logits)
            a = (dist.sample(seed=seeds[:, k]) if children is None else children[:, k])
            a = tf.cast(a, tf.int32)
            return a, dist.log_prob(a), dist.entropy()

        anchors, anchors_w1 = [], []
        for i in range(space.num_layers):
            h, state = self._lstm(x, state)
            a, lp, ent = decide(self._logits(h @ self.w_op), space.op_index[i])
            actions.append(a[:, None])
            log_probs.append(lp[:, None])
            entropies.append(ent[:, None])
            x = tf.gather(self.op_emb, a)
            h, state = self._lstm(x, state)
            if i > 0:
                query = tf.tanh(tf.stack(anchors_w1, 1) + (h @ self.w_attn_2)[:, None])
                logit = tf.squeeze(query @ self.v_attn, -1)  # [B, i]
                logits = self._logits(tf.stack([-logit, logit], -1))  # [B, i, 2]
                dist = tfd.Categorical(logits=logits)
                k0 = space.skip_index[i][0]
                if children is None:
                    skip = tf.cast(dist.sample(seed=seeds[:, k0]), tf.int32)
                else:
                    skip = children[:, k0:k0 + i]
                actions.append(skip)
                log_probs.append(dist.log_prob(skip))
                entropies.append(dist.entropy())
                p = tf.nn.softmax(logits)[..., 1]
                t = self.config.skip_target
                skip_kl += tf.reduce_sum(p * tf.math.log(p / t + 1e-12)
                                         + (1 - p) * tf.math.log((1 - p) / (1 - t) + 1e-12), 1)
                w = tf.cast(skip, tf.float32)[..., None]
                x = (tf.reduce_sum(w * tf.stack(anchors, 1), 1)
                     / (1.0 + tf.reduce_sum(w, 1)))
            else:
                x = tf.tile(self.g_emb, [batch_size, 1])
            anchors.append(h)
            anchors_w1.append(h @ self.w_attn_1)
        for c, k in enumerate(space.choice_index.values()):
            h, state = self._lstm(x, state)
            a, lp, ent = decide(self._logits(h @ self.w_choice[c]), k)
            actions.append(a[:, None])
            log_probs.append(lp[:, None])
            entropies.append(ent[:, None])
            x = tf.gather(self.choice_emb[c], a)
        more_seeds = None if seeds is None else seeds[:, len(space):]
        values, c_log_prob, c_entropy, loc, scale = self._walk_more(
            batch_size, state, x, values, more_seeds, pathwise)
        return PolicyWalk(
            children=tf.concat(actions, 1), values=values,
            discrete_log_prob=tf.concat(log_probs, 1), continuous_log_prob=c_log_prob,
            discrete_entropy=tf.concat(entropies, 1), continuous_entropy=c_entropy,
            skip_kl=skip_kl + tf.zeros((batch_size,)), loc=loc, scale=scale)

    # --- public API -----------------------------------------------------------------------
    @tf.function(autograph=False, reduce_retracing=True)
    def sample(self, batch_size=1):
        """Samples `batch_size` children: (int32 [B, len(space)], float32 values [B, C])
        (advances the RNG)."""
        seeds = tf.cast(self.rng.make_seeds(len(self.space) + self.num_continuous), tf.int32)
        walk = self.walk(batch_size, seeds=seeds)
        return walk.children, walk.values

    def _empty_values(self, children, values):
        children = tf.convert_to_tensor(children, tf.int32)
        if values is None:
            values = tf.zeros((tf.shape(children)[0], self.num_continuous))
        return children, tf.cast(values, tf.float32)

    @tf.function(autograph=False, reduce_retracing=True)
    def log_prob(self, children, values=None, mask=None):
        """log π_φ(child) = Σ categorical log-probs + Σ continuous log-densities → [B];
        mask [B, D] (optional, 0/1) keeps only the categorical decisions that count."""
        children, values = self._empty_values(children, values)
        walk = self.walk(tf.shape(children)[0], children, values)
        discrete = walk.discrete_log_prob
        if mask is not None:
            discrete *= tf.cast(mask, discrete.dtype)
        return tf.reduce_sum(discrete, 1) + walk.continuous_log_prob

    @tf.function(autograph=False, reduce_retracing=True)
    def _discrete_log_probs(self, children):
        children, values = self._empty_values(children, None)
        return self.walk(tf.shape(children)[0], children, values).discrete_log_prob

    def probabilities(self, index: int, children) -> np.ndarray:
        """π(decision `index` = v | earlier decisions of `children`) for every value v:
        [B, num_values] (one walk over every (child, v))."""
        children = np.array(children, np.int32)
        n = self.space.decisions[index].num_values
        rows = np.repeat(children[None], n, 0)  # [v, B, D]
        rows[:, :, index] = np.arange(n)[:, None]
        log_probs = self._discrete_log_probs(rows.reshape(-1, children.shape[1])).numpy()
        return np.exp(log_probs[:, index].reshape(n, -1).T)
