"""The policy controller π_φ: one LSTM over every decision of a SearchSpace, in order.

Architecture and optimizer decisions share one hidden state (the multi-task controller).
Each decision is a `tfp.distributions.Categorical` whose logits come from that state:

    logits = tanh_constant · tanh(W h / temperature)

ops from a shared softmax head, skip connections by ENAS's additive attention over the
earlier layers' anchors (logit_j = vᵀ tanh(W₁ h_j + W₂ h_i), categorical over [−logit, logit]),
optimizer choices from one head per choice. Trained by REINFORCE:

    loss = −(R − b) log π_φ(child) − β_ent H[π_φ] + β_skip KL(p_skip ‖ skip_target)

with a moving-average baseline b ← decay·b + (1 − decay)·R and Adam.
Defaults follow ENAS's published macro-search scripts (lstm_size 64, tanh_constant 1.5,
lr 1e-3, bl_dec 0.99, entropy_weight 1e-4, skip_target 0.4, skip_weight 0.8).
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_enas.space import SearchSpace

tfd = tfp.distributions


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


class Controller(tf.Module):
    """LSTM policy over `space.decisions`; children are int32 [batch, len(space)]."""

    def __init__(self, space: SearchSpace, config: ControllerConfig | None = None, seed: int = 0,
                 name: str = "controller"):
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
        self.baseline = tf.Variable(0.0, trainable=False, name="baseline")
        self.num_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_updates")
        self.rng = tf.random.Generator.from_seed(seed)
        self.optimizer = keras.optimizers.Adam(self.config.learning_rate)
        self.optimizer.build(self.trainable_variables)

    # --- the policy ---------------------------------------------------------------------
    def _lstm(self, x, state):
        h, c = state
        i, f, g, o = tf.split(tf.concat([x, h], 1) @ self.lstm_kernel + self.lstm_bias, 4, 1)
        c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, (h, c)

    def _logits(self, raw):
        raw = raw / self.config.temperature
        if self.config.tanh_constant is not None:
            raw = self.config.tanh_constant * tf.tanh(raw)
        return raw

    def _run(self, batch_size, children=None, seeds=None, return_state=False):
        """Walks the decisions; samples them (children None) or scores the given ones.

        Returns (children [B, D] int32, log_probs [B, D], entropies [B, D], skip_kl [B]), with
        one log-probability and entropy per decision (given the decisions before it);
        return_state=True appends (lstm_state, next_input) after the last decision, so a
        subclass can continue the same LSTM sequence with further decisions.
        """
        space, n = self.space, self.config.lstm_size
        zeros = tf.zeros((batch_size, n))
        state = (zeros, zeros)
        x = tf.tile(self.g_emb, [batch_size, 1])
        actions, log_probs, entropies, skip_kl = [], [], [], 0.0

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
        out = (tf.concat(actions, 1), tf.concat(log_probs, 1), tf.concat(entropies, 1),
               skip_kl + tf.zeros((batch_size,)))
        return out + ((state, x),) if return_state else out

    # --- public API -----------------------------------------------------------------------
    @tf.function(autograph=False, reduce_retracing=True)
    def sample(self, batch_size=1):
        """Samples `batch_size` children: int32 [batch_size, len(space)] (advances the RNG)."""
        seeds = tf.cast(self.rng.make_seeds(len(self.space)), tf.int32)
        return self._run(batch_size, seeds=seeds)[0]

    @tf.function(autograph=False, reduce_retracing=True)
    def log_prob(self, children):
        """log π_φ(child) for int32 children [B, D] → [B]."""
        children = tf.convert_to_tensor(children, tf.int32)
        return tf.reduce_sum(self._run(tf.shape(children)[0], children=children)[1], 1)

    @tf.function(autograph=False, reduce_retracing=True)
    def entropy(self, children):
        """Sum over decisions of the entropy of each decision's distribution given the
        earlier decisions of `children` → [B]."""
        children = tf.convert_to_tensor(children, tf.int32)
        return tf.reduce_sum(self._run(tf.shape(children)[0], children=children)[2], 1)

    def probabilities(self, index: int, children) -> np.ndarray:
        """π(decision `index` = v | earlier decisions of `children`) for every value v:
        [B, num_values] (eager; for inspection and tests)."""
        children = np.array(children, np.int32)
        out = []
        for v in range(self.space.decisions[index].num_values):
            children[:, index] = v
            out.append(self._run(len(children), children=tf.constant(children))[1][:, index])
        return np.exp(np.stack(out, 1))

    def reinforce_loss(self, children, rewards, mask=None):
        """REINFORCE loss with the current baseline (call inside a GradientTape).

        mask: optional [B, D] 0/1 of the decisions that count (e.g. the active ones of a
        conditional keras-tuner space); the others add neither log-prob nor entropy.
        """
        cfg = self.config
        _, log_probs, entropies, skip_kl = self._run(tf.shape(children)[0], children=children)
        if mask is not None:
            mask = tf.cast(mask, log_probs.dtype)
            log_probs, entropies = log_probs * mask, entropies * mask
        log_prob, entropy = tf.reduce_sum(log_probs, 1), tf.reduce_sum(entropies, 1)
        advantage = tf.stop_gradient(rewards - self.baseline)
        loss = (-tf.reduce_mean(advantage * log_prob)
                - cfg.entropy_weight * tf.reduce_mean(entropy)
                + cfg.skip_weight * tf.reduce_mean(skip_kl))
        return loss, entropy

    @tf.function(autograph=False, reduce_retracing=True)
    def update(self, children, rewards, mask=None):
        """One REINFORCE step on children [B, D] with rewards [B] (mask: see
        reinforce_loss); returns a dict of logs.

        The baseline is updated first (b ← decay·b + (1−decay)·mean R; the first update sets
        b = mean R), then φ ← Adam(∇_φ loss).
        """
        children = tf.convert_to_tensor(children, tf.int32)
        rewards = tf.cast(rewards, tf.float32)
        mean_r = tf.reduce_mean(rewards)
        d = self.config.baseline_decay
        self.baseline.assign(tf.where(self.num_updates == 0, mean_r,
                                      d * self.baseline + (1 - d) * mean_r))
        with tf.GradientTape() as tape:
            loss, entropy = self.reinforce_loss(children, rewards, mask)
        grads = tape.gradient(loss, self.trainable_variables)
        return self.apply_gradients(grads) | {
            "controller/loss": loss, "controller/entropy": tf.reduce_mean(entropy),
            "controller/reward": mean_r, "controller/baseline": self.baseline.read_value()}

    def apply_gradients(self, grads):
        """Adam step on the controller's variables (with optional global-norm clipping)."""
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.trainable_variables)]
        norm = tf.linalg.global_norm(grads)
        if self.config.grad_clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.config.grad_clip_norm, norm)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.num_updates.assign_add(1)
        return {"controller/grad_norm": norm}

    def most_likely(self) -> np.ndarray:
        """Greedy child (argmax decision by decision); for reports."""
        space = self.space
        child = np.zeros((1, len(space)), np.int32)
        for k in range(len(space)):
            p = self.probabilities(k, child)[0]
            child[0, k] = int(np.argmax(p))
        return child[0]
