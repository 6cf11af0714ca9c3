"""The policy controller π_φ: one LSTM over every decision of a SearchSpace, in order.

Architecture and optimizer decisions share one hidden state (the multi-task controller).
Each decision is a `tfp.distributions.Categorical` whose logits come from that state:

    logits = tanh_constant · tanh(W h / temperature)

ops from a shared softmax head, skip connections by ENAS's additive attention over the
earlier layers' anchors (logit_j = vᵀ tanh(W₁ h_j + W₂ h_i), categorical over [−logit, logit]),
optimizer choices from one head per choice. Trained by REINFORCE:

    loss = −(R − b) log π_φ(child) − β_ent H[π_φ] + β_skip KL(p_skip ‖ skip_target)

with a moving-average baseline b ← decay·b + (1 − decay)·R and Adam. A subclass adds
decisions after these through two hooks, `_build_heads` and `_walk_more` (see
joint_controller.py); every controller returns (children, values) from `sample`, with
values an empty [B, 0] tensor when it has no continuous decisions.
Defaults follow ENAS's published macro-search scripts (lstm_size 64, tanh_constant 1.5,
lr 1e-3, bl_dec 0.99, entropy_weight 1e-4, skip_target 0.4, skip_weight 0.8).
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


class ResponseTerms(collections.namedtuple(
        "ResponseTerms", ["score_weights", "dloss_dvalues", "score_continuous"])):
    """What a response estimator adds to REINFORCE, as a surrogate whose φ-gradient is it:

        S(φ) = mean_i [ s_i · log π_φ(a_i) + Σ_c (∂L/∂h_ic) · h_ic(φ) ]

    score_weights s [B] (a score-function term on the categorical decisions),
    dloss_dvalues [B, C] (pathwise, through the reparameterized continuous values), and
    score_continuous: whether the continuous decisions keep their REINFORCE term (False
    when the pathwise term replaces it)."""

    def surrogate(self, walk: PolicyWalk):
        discrete = tf.reduce_sum(walk.discrete_log_prob, 1)
        return (tf.reduce_mean(tf.stop_gradient(self.score_weights) * discrete)
                + tf.reduce_mean(tf.reduce_sum(
                    tf.stop_gradient(self.dloss_dvalues) * walk.values, -1)))


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
        self._build_heads(n, seed)
        self.baseline = tf.Variable(0.0, trainable=False, name="baseline")
        self.num_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_updates")
        self.rng = tf.random.Generator.from_seed(seed)
        self.optimizer = keras.optimizers.Adam(self.config.learning_rate)
        self.optimizer.build(self.trainable_variables)

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
        i, f, g, o = tf.split(tf.concat([x, h], 1) @ self.lstm_kernel + self.lstm_bias, 4, 1)
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
    def log_prob(self, children, values=None):
        """log π_φ(child) = Σ categorical log-probs + Σ continuous log-densities → [B]."""
        children, values = self._empty_values(children, values)
        walk = self.walk(tf.shape(children)[0], children, values)
        return tf.reduce_sum(walk.discrete_log_prob, 1) + walk.continuous_log_prob

    def probabilities(self, index: int, children) -> np.ndarray:
        """π(decision `index` = v | earlier decisions of `children`) for every value v:
        [B, num_values] (eager; for inspection and tests)."""
        children = np.array(children, np.int32)
        out = []
        for v in range(self.space.decisions[index].num_values):
            children[:, index] = v
            walk = self.walk(len(children), children=tf.constant(children),
                             values=tf.zeros((len(children), self.num_continuous)))
            out.append(walk.discrete_log_prob[:, index])
        return np.exp(np.stack(out, 1))

    def reinforce_loss(self, walk: PolicyWalk, rewards, mask=None, score_continuous=True,
                       baseline=None):
        """−mean((R − b)·log π) − β_ent·mean(H) + β_skip·mean(KL) on a walk (call inside a
        GradientTape); b: `baseline` (scalar or [B]; default the moving average).

        mask: optional [B, D] 0/1 of the categorical decisions that count (e.g. the active
        ones of a conditional keras-tuner space). score_continuous=False leaves the
        continuous log-densities out (their gradient then comes pathwise, from a response).
        """
        cfg = self.config
        log_probs, entropies = walk.discrete_log_prob, walk.discrete_entropy
        if mask is not None:
            mask = tf.cast(mask, log_probs.dtype)
            log_probs, entropies = log_probs * mask, entropies * mask
        log_prob = tf.reduce_sum(log_probs, 1)
        if score_continuous:
            log_prob += walk.continuous_log_prob
        entropy = tf.reduce_sum(entropies, 1) + walk.continuous_entropy
        baseline = self.baseline if baseline is None else baseline
        advantage = tf.stop_gradient(tf.cast(rewards, tf.float32) - baseline)
        return (-tf.reduce_mean(advantage * log_prob)
                - cfg.entropy_weight * tf.reduce_mean(entropy)
                + cfg.skip_weight * tf.reduce_mean(walk.skip_kl))

    def gradients(self, children, values, rewards, mask=None, response=None,
                  response_weight=1.0):
        """(∇_φ estimate [per variable], logs) of one batch; changes nothing.

        ∇_φ [REINFORCE loss with the baseline from before this batch (the first batch: each
        child's leave-one-out mean, so no child's reward is in its own baseline)] +
        response_weight·∇_φ S, S the surrogate of `response` (ResponseTerms, optional). A
        non-finite response gradient is dropped (logged), never returned.
        """
        children, values = self._empty_values(children, values)
        rewards = tf.cast(rewards, tf.float32)
        n = tf.cast(tf.shape(rewards)[0], tf.float32)
        leave_one_out = (tf.reduce_sum(rewards) - rewards) / tf.maximum(n - 1, 1)
        baseline = tf.where(self.num_updates == 0, leave_one_out, self.baseline)
        variables = self.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            walk = self.walk(tf.shape(children)[0], children, values, pathwise=True)
            loss = self.reinforce_loss(walk, rewards, mask, response is None
                                       or response.score_continuous, baseline)
            surrogate = tf.constant(0.0) if response is None else response.surrogate(walk)
        reinforce = _dense(tape.gradient(loss, variables), variables)
        extra = _dense(tape.gradient(surrogate, variables), variables)
        del tape
        extra_norm = tf.linalg.global_norm(extra)
        finite = tf.math.is_finite(extra_norm)
        w = tf.cast(response_weight, tf.float32)
        grads = [g + tf.where(finite, w * e, tf.zeros_like(e)) for g, e in zip(reinforce, extra)]
        reinforce_norm = tf.linalg.global_norm(reinforce)
        dot = tf.add_n([tf.reduce_sum(a * b) for a, b in zip(reinforce, extra)])
        return grads, {
            "controller/loss": loss, "controller/entropy": tf.reduce_mean(
                tf.reduce_sum(walk.discrete_entropy, 1) + walk.continuous_entropy),
            "controller/reward": tf.reduce_mean(rewards),
            "response/reinforce_grad_norm": reinforce_norm,
            "response/response_grad_norm": tf.where(finite, extra_norm, 0.0),
            "response/cosine": tf.where(finite, dot / (reinforce_norm * extra_norm + 1e-30),
                                        0.0),
            "response/nonfinite": tf.cast(tf.logical_not(finite), tf.float32)}

    @tf.function(autograph=False, reduce_retracing=True)
    def update(self, children, values, rewards, mask=None, response=None,
               response_weight=1.0):
        """One controller step: φ ← Adam(gradients(...)), then the baseline
        b ← decay·b + (1−decay)·mean R (the first update sets b = mean R); returns logs."""
        grads, logs = self.gradients(children, values, rewards, mask, response,
                                     response_weight)
        mean_r = logs["controller/reward"]
        d = self.config.baseline_decay
        self.baseline.assign(tf.where(self.num_updates == 0, mean_r,
                                      d * self.baseline + (1 - d) * mean_r))
        return logs | self.apply_gradients(grads) | {
            "controller/baseline": self.baseline.read_value()}

    def apply_gradients(self, grads):
        """Adam step on the controller's variables (with optional global-norm clipping)."""
        grads = _dense(grads, self.trainable_variables)
        norm = tf.linalg.global_norm(grads)
        if self.config.grad_clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.config.grad_clip_norm, norm)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.num_updates.assign_add(1)
        return {"controller/grad_norm": norm}

    # --- state ------------------------------------------------------------------------------
    def get_state(self) -> dict:
        """Everything that changes during a search, JSON-safe: variables and Adam slots by
        name (Keras's public `optimizer.variables` names), baseline, update count, RNG."""
        return {"variables": {_key(v.name): v.numpy().tolist() for v in self.variables},
                "optimizer": {v.name: v.numpy().tolist() for v in self.optimizer.variables},
                "rng": self.rng.state.numpy().tolist()}

    def set_state(self, state: dict, strict: bool = True):
        """Restores get_state(). strict=False assigns only what matches by name and shape
        (a controller rebuilt for a grown space keeps what it knew); strict=True raises
        ValueError naming whatever is missing or mis-shaped."""
        pairs = [(state["variables"], {_key(v.name): v for v in self.variables}),
                 (state["optimizer"], {v.name: v for v in self.optimizer.variables})]
        problems = []
        for saved, own in pairs:
            for k, var in own.items():
                dtype = tf.as_dtype(var.dtype).as_numpy_dtype
                value = np.asarray(saved[k], dtype) if k in saved else None
                if value is None or value.shape != tuple(var.shape):
                    problems.append(k)
                else:
                    var.assign(value)
        if strict and problems:
            raise ValueError(f"controller state does not match this controller: {problems}")
        self.rng.reset(np.asarray(state["rng"], np.int64))
        return problems


def _key(name: str) -> str:
    return name.split(":")[0]


def _dense(grads, variables):
    """Gradients as dense tensors (embeddings give IndexedSlices), zeros where None."""
    return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(grads, variables)]
