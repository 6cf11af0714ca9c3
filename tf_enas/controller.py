"""The controller: the policy π_φ trained by REINFORCE (plus a response estimator's terms).

    loss = −(R − b) log π_φ(child) − β_ent H[π_φ] + β_skip KL(p_skip ‖ skip_target)

b is a moving-average baseline (decay·b + (1 − decay)·R, updated after each step, so no
child's reward is in its own baseline; leave-one-out means on the first batch), Adam on φ.
Every controller returns (children, values) from `sample`, with values an empty [B, 0]
tensor when it has no continuous decisions. Defaults follow ENAS's published macro-search
scripts (lstm_size 64, tanh_constant 1.5, lr 1e-3, bl_dec 0.99, entropy_weight 1e-4,
skip_target 0.4, skip_weight 0.8).
"""
from __future__ import annotations

import collections

import keras
import numpy as np
import tensorflow as tf

from tf_enas import fused_adam
from tf_enas.policy import ControllerConfig, Policy, PolicyWalk
from tf_enas.space import SearchSpace

__all__ = ["Controller", "ControllerConfig", "PolicyWalk", "ResponseTerms"]


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


class Controller(Policy):
    """The policy with its training state: baseline, update count, Adam (built once, over
    every head the subclass hooks added)."""

    def __init__(self, space: SearchSpace, config: ControllerConfig | None = None, seed: int = 0,
                 name: str = "controller"):
        super().__init__(space, config, seed=seed, name=name)
        self.baseline = tf.Variable(0.0, trainable=False, name="baseline")
        self.num_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_updates")
        self.optimizer = keras.optimizers.Adam(self.config.learning_rate)
        self.optimizer.build(self.trainable_variables)

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

    def update_steps(self, children, rewards, mask=None, steps: int = 1) -> dict:
        """`steps` updates on the same categorical trials (PolicyOracle's
        PolicyUpdate.steps); returns the last step's logs."""
        for _ in range(steps):
            logs = self.update(children, None, rewards, mask)
        return logs

    def candidate_rows(self, n: int, scored=None) -> np.ndarray:
        """Candidates for a proposal (PolicyOracle's `candidates`): n draws from the policy,
        int32 [n, D]; `scored` (children, rewards of the trials so far) is for subclasses."""
        return self.sample(n)[0].numpy()

    def proposal_score(self, children, mask=None):
        """What a proposal maximizes among draws from the policy (PolicyOracle's
        `candidates`): log π_φ over the decisions of `mask` (see Policy.log_prob)."""
        return self.log_prob(children, mask=mask)

    def apply_gradients(self, grads):
        """Adam step on the controller's variables (with optional global-norm clipping; one
        fused kernel per variable, fused_adam)."""
        grads = _dense(grads, self.trainable_variables)
        norm = tf.linalg.global_norm(grads)
        if self.config.grad_clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.config.grad_clip_norm, norm)
        fused_adam.apply_gradients(self.optimizer, grads, self.trainable_variables)
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
