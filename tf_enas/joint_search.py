"""Joint architecture + optimizer search with response gradients (DESIGN.md §1).

One `JointController` emits the architecture (categorical) and the optimizer
hyperparameters h = (learning rate η, momentum μ, weight decay λ; continuous,
reparameterized). The shared-weight phase trains every sampled child with its own h
(heavy ball on the shared weights: v ← μv + g, w ← w − η·s_t·v, g = ∇[CE + λ‖w‖²] clipped,
s_t the cosine-with-restarts multiplier). The controller minimizes

    J(φ) = E_{d∼π_φ} L_val(a, w_K(d)),   w_K(d): K = lookahead_steps steps of d's own optimizer
                                         (from the shared weights, zero velocity, one batch)

(K = 0 is ENAS's reward on the shared weights); the reward is R = −min(L_val, cap), and a
non-finite loss gets the worst reward −cap. `response` adds the term ENAS drops:

* none:     REINFORCE over every decision.
* unrolled: on response steps the continuous decisions leave the score term and get the
            pathwise ∂L_val(a, w_K)/∂h · ∂h/∂φ instead (needs K ≥ 1).
* ift:      on response steps, −∂_φ E_π[uᵀ∇_w L_train(d, w)] with (H + δI)u = E∇_w L_val
            by CG (cross-fitted halves, `response.ift_cross_fit`); learning rate and
            momentum get exactly zero (they do not move w* = argmin E_π L_train), weight
            decay gets uᵀ2w·∂λ/∂φ. With K > 0 the right-hand side still uses ∇_w L_val at the
            shared weights (∂w_K/∂w taken as I). Caveat: the shared phase's fixed point is
            really E_π[η·∇L_train] = 0 (each child steps with its own η); the IFT term
            follows the design's w* = argmin E_π L_train.

The response is computed on every `response_every`-th controller step (it costs several
times a REINFORCE step) and added with `response_weight`. The derived child is the best
architecture of `derive_samples` on the validation set; its optimizer hyperparameters are
the policy's medians T(μ) given that architecture, and the retrain uses them (SGD-Nesterov;
L2 coefficient λ becomes Keras' decoupled weight_decay 2λ/(1 − μ)).
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from tf_enas import files
from tf_enas import hypergrad
from tf_enas import response as response_lib
from tf_enas.joint_controller import DEFAULTS, ContinuousDecision, JointController
from tf_enas.search import Search, SearchConfig

SEARCHABLE = ("learning_rate", "momentum", "weight_decay")


@dataclasses.dataclass
class JointConfig(SearchConfig):
    """SearchConfig plus the continuous decisions and the response estimator."""

    continuous: tuple = SEARCHABLE
    ranges: dict = dataclasses.field(default_factory=dict)  # name -> (low, high)
    response: str = "none"
    response_weight: float = 1.0
    response_every: int = 1
    lookahead_steps: int = 1
    lookahead_batch_size: int = 64
    cg_iterations: int = 5
    cg_damping: float = 1e-2
    ift_batch_size: int = 128
    reward_loss_cap: float = 5.0

    def validate(self):
        super().validate()
        if self.response not in response_lib.RESPONSES:
            raise ValueError(f"response must be one of {response_lib.RESPONSES}, got "
                             f"{self.response!r}")
        unknown = [k for k in self.continuous if k not in SEARCHABLE]
        if unknown or len(set(self.continuous)) != len(self.continuous):
            raise ValueError(f"continuous must be distinct names from {SEARCHABLE}, got "
                             f"{list(self.continuous)}")
        bad = [k for k in self.ranges if k not in self.continuous]
        if bad:
            raise ValueError(f"ranges given for {bad}, which are not continuous decisions")
        clash = set(self.continuous) & set(self.choices)
        if clash:
            raise ValueError(f"{sorted(clash)} cannot be both a grid choice and continuous")
        for k in ("response_every", "lookahead_batch_size", "cg_iterations", "ift_batch_size"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.lookahead_steps < 0 or self.cg_damping < 0 or self.reward_loss_cap <= 0:
            raise ValueError("need lookahead_steps >= 0, cg_damping >= 0, reward_loss_cap > 0")
        if self.response_weight < 0:
            raise ValueError(f"response_weight must be >= 0, got {self.response_weight}")
        if self.response == "unrolled" and (self.lookahead_steps < 1 or not self.continuous):
            raise ValueError("response=unrolled needs lookahead_steps >= 1 and at least one "
                             "continuous decision (the response is ∂L_val(w_K)/∂h)")
        if self.response == "ift" and self.controller_batch < 4:
            raise ValueError(f"response=ift needs controller_batch >= 4, got "
                             f"{self.controller_batch}")
        if "learning_rate" in self.continuous and self.retrain.optimizer != "sgd":
            raise ValueError("the joint search picks an SGD learning rate: set the retrain "
                             "optimizer to sgd (--retrain_optimizer=sgd)")
        self.decisions()
        return self

    def decisions(self) -> tuple:
        """The ContinuousDecisions, defaults with `ranges` applied."""
        out = []
        for k in self.continuous:
            d = DEFAULTS[k]
            if k in self.ranges:
                low, high = self.ranges[k]
                d = dataclasses.replace(d, low=float(low), high=float(high))
            out.append(d.validate())
        return tuple(out)


class JointSearch(Search):
    """A resumable joint search over `config` (a JointConfig), writing into `output_dir`."""

    def __init__(self, config: JointConfig, output_dir: str, splits=None, verbose: int = 1):
        super().__init__(config, output_dir, splits=splits, verbose=verbose)
        c = self.config
        self.controller = JointController(self.space, c.decisions(), c.controller, seed=c.seed)
        self._cidx = {d.name: i for i, d in enumerate(self.controller.continuous)}
        weights = self.supernet.trainable_variables
        self.velocity = [tf.Variable(tf.zeros_like(v), trainable=False,
                                     name=f"velocity_{i}") for i, v in enumerate(weights)]
        self.shared_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="shared_steps")
        ids = {id(v) for v in self._l2_vars}
        self._l2_index = [i for i, v in enumerate(weights) if id(v) in ids]
        self.batch_rng = tf.random.Generator.from_seed(c.seed + 7919)
        self.checkpoint = tf.train.Checkpoint(
            supernet=self.supernet, velocity=self.velocity, controller=self.controller,
            epoch=self.epoch, elapsed=self.elapsed, skipped=self.skipped_steps,
            history=self.history_json, shared_steps=self.shared_steps,
            batch_rng=self.batch_rng)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(output_dir, "checkpoints"), max_to_keep=2)

    # --- the child's hyperparameters and losses, as pure functions ----------------------------
    def hparams(self, values):
        """(η, μ, λ) of one child from its continuous values [C] (config defaults otherwise)."""
        c = self.config

        def pick(name, default):
            return values[self._cidx[name]] if name in self._cidx else tf.constant(
                default, tf.float32)
        return pick("learning_rate", c.lr_max), pick("momentum", c.momentum), pick(
            "weight_decay", c.l2)

    def _logits(self, params, x, child):
        nt = [v.value for v in self.supernet.non_trainable_variables]
        out, _ = self.supernet.stateless_call(params, nt, x, child=child, training=True,
                                              update_stats=False)
        return out

    def _ce(self, params, x, y, child):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            y, self._logits(params, x, child)))

    def _l2(self, params):
        return tf.add_n([tf.reduce_sum(tf.square(params[i])) for i in self._l2_index])

    def _params(self):
        return [tf.convert_to_tensor(v.value) for v in self.supernet.trainable_variables]

    def _sample_batch(self, size):
        n = len(self.splits.x_train)
        idx = self.batch_rng.uniform([size], 0, n, dtype=tf.int32)
        return tf.gather(self._x_train, idx), tf.gather(self._y_train, idx)

    # --- shared-weight phase ------------------------------------------------------------------
    @tf.function(autograph=False)
    def train_step(self, x, y):
        """Samples a child (a, h) and trains the shared weights on (x, y) with its own h."""
        self.train_traces += 1
        children, values = self.controller.sample(1)
        return self.train_child_step(x, y, children[0], values[0])

    @tf.function(autograph=False)
    def train_child_step(self, x, y, child, values):
        """One heavy-ball step of `child` with its (η, μ, λ); a step whose loss, gradient or
        new weights (Σw², velocity) are non-finite is skipped (nothing changes) and counted."""
        lr, mom, wd = self.hparams(values)
        stats = self.supernet.non_trainable_variables
        saved = [tf.identity(v.value) for v in stats]
        weights = self.supernet.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.supernet(x, child, training=True)
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            loss = ce + wd * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self._l2_vars])
        grads = tape.gradient(loss, weights)
        grads, norm = tf.clip_by_global_norm(grads, self.config.grad_clip_norm)
        step_lr = lr * tf.cast(self.schedule(self.shared_steps), tf.float32)
        new_v = [mom * v + g for v, g in zip(self.velocity, grads)]
        new_w = [w - step_lr * v for w, v in zip(weights, new_v)]
        finite = (tf.math.is_finite(loss) & tf.math.is_finite(norm)
                  & tf.math.is_finite(tf.add_n([tf.reduce_sum(tf.square(w)) for w in new_w]))
                  & tf.math.is_finite(tf.add_n([tf.reduce_sum(tf.square(v)) for v in new_v])))

        def apply():
            for var, t in zip(weights, new_w):
                var.assign(t)
            for var, t in zip(self.velocity, new_v):
                var.assign(t)
            self.shared_steps.assign_add(1)
            return tf.constant(0, tf.int64)

        def skip():
            for v, t in zip(stats, saved):
                v.assign(t)
            return tf.constant(1, tf.int64)

        skipped = tf.cond(finite, apply, skip)
        self.skipped_steps.assign_add(skipped)
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y),
                                     tf.float32))
        return {"train/loss": ce, "train/accuracy": acc, "train/grad_norm": norm,
                "train/lr": step_lr, "train/step_skipped": tf.cast(skipped, tf.float32)}

    # --- the controller's objective -------------------------------------------------------------
    def _train_loss_fn(self, child, x, y):
        """L_train(w, h, t) = CE(a, w) + λ(h)‖w‖² (the child's own training objective)."""
        return lambda p, h, t=0: self._ce(p, x, y, child) + self.hparams(h)[2] * self._l2(p)

    def _lookahead(self, params, child, values, x, y):
        """w_K: K heavy-ball steps of the child's own (η, μ, λ) from `params`, zero velocity."""
        lr, mom, _ = self.hparams(values)
        loss = self._train_loss_fn(child, x, y)
        vel = [tf.zeros_like(p) for p in params]
        for _ in range(self.config.lookahead_steps):
            _, g = hypergrad.gradient(lambda p: loss(p, values), params)
            params, vel = hypergrad.momentum_step(params, vel, g, lr, mom)
        return params

    def _reward(self, loss):
        cap = self.config.reward_loss_cap
        return tf.where(tf.math.is_finite(loss), -tf.minimum(loss, cap), -cap)

    @tf.function(autograph=False)
    def lookahead_losses(self, children, values, x_val, y_val, x_tr, y_tr):
        """L_val(a_i, w_K(d_i)) for each child [B] (K = 0: at the shared weights)."""
        params = self._params()

        def one(args):
            child, vals = args
            return self._ce(self._lookahead(params, child, vals, x_tr, y_tr), x_val, y_val,
                            child)
        return tf.map_fn(one, (children, values), fn_output_signature=tf.float32)

    @tf.function(autograph=False)
    def unrolled_hypergradients(self, children, values, x_val, y_val, x_tr, y_tr):
        """(∂L_val(a_i, w_K)/∂h_i [B, C], L_val(a_i, w_K) [B]) through the K steps (reverse mode)."""
        params = self._params()
        c = self.config

        def hyper(name, default):
            if name in self._cidx:
                return lambda hp: hp[0][self._cidx[name]]
            return default

        def one(args):
            child, vals = args
            return response_lib.unrolled_hypergradient(
                self._train_loss_fn(child, x_tr, y_tr),
                lambda p, h: self._ce(p, x_val, y_val, child), params, vals,
                c.lookahead_steps, learning_rate=hyper("learning_rate", c.lr_max),
                momentum=hyper("momentum", c.momentum))
        return tf.map_fn(one, (children, values), fn_output_signature=(
            tf.TensorSpec([len(self._cidx)], tf.float32), tf.float32))

    @tf.function(autograph=False)
    def _ift_solve(self, children, values, x_val, y_val, x_tr, y_tr):
        """u ≈ (H + δI)⁻¹ (1/n)Σ_i ∇_w L_val(a_i, w), H = (1/n)Σ_i ∇²_w L_train(d_i, w), by CG;
        (u, SolverInfo). Children run in tf.map_fn: the graph holds one child's HVP."""
        params = self._params()
        like = [tf.TensorSpec(p.shape, p.dtype) for p in params]
        grads = tf.map_fn(lambda a: hypergrad.gradient(
            lambda p: self._ce(p, x_val, y_val, a), params)[1], children,
            fn_output_signature=like)

        def matvec(v):
            hv = tf.map_fn(lambda a: hypergrad.hvp(
                lambda p: self._train_loss_fn(a[0], x_tr, y_tr)(p, a[1]), params, v),
                (children, values), fn_output_signature=like)
            return [tf.reduce_mean(t, 0) for t in hv]
        return hypergrad.conjugate_gradient(
            matvec, [tf.reduce_mean(g, 0) for g in grads], self.config.cg_iterations,
            tol=1e-6, damping=self.config.cg_damping)

    @tf.function(autograph=False)
    def _ift_couple(self, children, values, u, x_tr, y_tr):
        """(c_i [n], ∂c_i/∂h_i [n, C]) with c_i = uᵀ∇_w L_train(d_i, w) (response.ift_coupling)."""
        params = self._params()
        return tf.map_fn(lambda a: response_lib.ift_coupling(
            self._train_loss_fn(a[0], x_tr, y_tr), params, u, a[1]), (children, values),
            fn_output_signature=(tf.TensorSpec([], tf.float32),
                                 tf.TensorSpec([len(self._cidx)], tf.float32)))

    @tf.function(autograph=False)
    def ift_couplings(self, children, values, x_val, y_val, x_tr, y_tr):
        """Cross-fitted (c_i, ∂c_i/∂h_i, baseline_i) with c_i = uᵀ∇_w L_train(d_i, w), and
        the two CG solves' infos (see response.ift_cross_fit). Both halves call the same
        traced solve and coupling functions."""
        def half(idx):
            return tf.gather(children, idx), tf.gather(values, idx)

        def solve(idx):
            return self._ift_solve(*half(idx), x_val, y_val, x_tr, y_tr)

        def couple(u, idx):
            return self._ift_couple(*half(idx), u, x_tr, y_tr)

        cpl, dc, base, infos = response_lib.ift_cross_fit(solve, couple,
                                                          self.config.controller_batch)
        return cpl, dc, base, {
            "iterations": tf.cast(tf.stack([i.iterations for i in infos]), tf.float32),
            "residual": tf.stack([i.residual_norm for i in infos]),
            "negative_curvature": tf.cast(tf.stack([i.negative_curvature for i in infos]),
                                          tf.float32),
            "converged": tf.cast(tf.stack([i.converged for i in infos]), tf.float32)}

    @tf.function(autograph=False)
    def _controller_update(self, children, values, rewards, resp, score_continuous):
        """Adam on ∇_φ[REINFORCE loss] + response_weight·∇_φ[response surrogate]; `resp` is a
        dict of per-child response tensors (empty for a plain step). A non-finite response
        gradient is dropped (counted), never applied."""
        ctrl = self.controller
        mean_r = ctrl.update_baseline(rewards)
        variables = ctrl.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            parts = ctrl.walk(tf.shape(children)[0], children, values, pathwise=True)
            loss = ctrl.reinforce_loss(parts, rewards, score_continuous=score_continuous)
            if "dloss_dh" in resp:
                surrogate = response_lib.unrolled_surrogate(resp["dloss_dh"], parts.values)
            elif "coupling" in resp:
                surrogate = response_lib.ift_surrogate(
                    resp["coupling"], resp["dcoupling_dh"], parts.discrete_log_prob,
                    parts.values, resp["baseline"])
            else:
                surrogate = tf.constant(0.0)
        def dense(grads):  # embeddings give IndexedSlices; None where a term does not reach
            return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                    for g, v in zip(grads, variables)]
        g_r = dense(tape.gradient(loss, variables))
        g_s = dense(tape.gradient(surrogate, variables))
        del tape
        n_s = tf.linalg.global_norm(g_s)
        ok = tf.math.is_finite(n_s)
        w = tf.constant(self.config.response_weight, tf.float32)
        grads = [gr + tf.where(ok, w * gs, tf.zeros_like(gs)) for gr, gs in zip(g_r, g_s)]
        dot = tf.add_n([tf.reduce_sum(a * b) for a, b in zip(g_r, g_s)])
        n_r = tf.linalg.global_norm(g_r)
        logs = ctrl.apply_gradients(grads)
        h_means = {f"controller/{d.name}": tf.reduce_mean(values[:, i])
                   for i, d in enumerate(ctrl.continuous)}
        return logs | h_means | {
            "controller/loss": loss, "controller/entropy": tf.reduce_mean(parts.entropy),
            "controller/reward": mean_r, "controller/baseline": ctrl.baseline.read_value(),
            "response/reinforce_grad_norm": n_r,
            "response/response_grad_norm": tf.where(ok, n_s, 0.0),
            "response/cosine": tf.where(ok, dot / (n_r * n_s + 1e-30), 0.0),
            "response/nonfinite": tf.cast(tf.logical_not(ok), tf.float32)}

    def controller_step(self, x, y):
        """Samples controller_batch children, rewards −L_val(a, w_K(d)), REINFORCE (+ the
        response on every response_every-th step)."""
        c = self.config
        children, values = self.controller.sample(c.controller_batch)
        x_la, y_la = self._sample_batch(c.lookahead_batch_size)
        is_response = (c.response != "none" and
                       int(self.controller.num_updates.numpy()) % c.response_every == 0)
        resp, extra = {}, {}
        if is_response and c.response == "unrolled":
            dldh, losses = self.unrolled_hypergradients(children, values, x, y, x_la, y_la)
            finite = tf.reduce_all(tf.math.is_finite(dldh), 1) & tf.math.is_finite(losses)
            resp = {"dloss_dh": tf.where(finite[:, None], dldh, 0.0)}
            for i, d in enumerate(self.controller.continuous):
                extra[f"response/dloss_d{d.name}"] = float(tf.reduce_mean(resp["dloss_dh"][:, i]))
        else:
            losses = self.lookahead_losses(children, values, x, y, x_la, y_la)
        rewards = self._reward(losses)
        if is_response and c.response == "ift":
            x_ift, y_ift = self._sample_batch(c.ift_batch_size)
            cpl, dc, base, info = self.ift_couplings(children, values, x, y, x_ift, y_ift)
            finite = tf.math.is_finite(cpl) & tf.reduce_all(tf.math.is_finite(dc), 1)
            resp = {"coupling": tf.where(finite, cpl, 0.0),
                    "dcoupling_dh": tf.where(finite[:, None], dc, 0.0),
                    "baseline": tf.where(tf.math.is_finite(base), base, 0.0)}
            extra = {"response/cg_iterations": float(tf.reduce_mean(info["iterations"])),
                     "response/cg_residual": float(tf.reduce_mean(info["residual"])),
                     "response/cg_negative_curvature": float(tf.reduce_sum(
                         info["negative_curvature"])),
                     "response/cg_converged": float(tf.reduce_mean(info["converged"]))}
            for i, d in enumerate(self.controller.continuous):
                extra[f"response/dcoupling_d{d.name}"] = float(tf.reduce_mean(dc[:, i]))
        score_continuous = not (is_response and c.response == "unrolled")
        logs = self._controller_update(children, values, rewards, resp, score_continuous)
        logs = {k: float(v) for k, v in logs.items()}
        logs["controller/val_loss"] = float(tf.reduce_mean(tf.where(
            tf.math.is_finite(losses), losses, c.reward_loss_cap)))
        logs["response/computed"] = float(is_response)
        return logs | self._response_keys(extra)

    def _response_keys(self, extra):
        """Every response log key on every step (zeros where not computed), so epochs average."""
        keys = ["response/cg_iterations", "response/cg_residual",
                "response/cg_negative_curvature", "response/cg_converged"]
        keys += [f"response/dloss_d{d.name}" for d in self.controller.continuous]
        keys += [f"response/dcoupling_d{d.name}" for d in self.controller.continuous]
        return {k: extra.get(k, 0.0) for k in keys}

    # --- derive and results ---------------------------------------------------------------------
    def derive(self) -> dict:
        """Best of derive_samples architectures on the whole validation set (shared weights);
        its optimizer hyperparameters are the policy's medians T(μ) given that architecture."""
        c = self.config
        children, _ = self.controller.sample(c.derive_samples)
        scores = self.evaluate_children(children, self._x_val, self._y_val).numpy()
        best = children[int(np.argmax(scores))].numpy()
        chosen = self.controller.most_likely_values(best)
        lr, mom, wd = (chosen.get("learning_rate", c.lr_max), chosen.get("momentum", c.momentum),
                       chosen.get("weight_decay", c.l2))
        return {"child": self.space.to_string(best),
                "architecture": self.space.architecture(best),
                "searched_hyperparameters": chosen,
                # Keras SGD's decoupled decay w ← w − η·wd·w matches the L2 term λ‖w‖² under
                # momentum μ (whose velocity accumulates 2λw over ~1/(1−μ) steps) at
                # wd = 2λ/(1−μ)
                "hyperparameters": self.space.hyperparameters(best) | {
                    "learning_rate": float(lr), "momentum": float(mom),
                    "weight_decay": float(2 * wd / (1 - mom))},
                "shared_weights_val_accuracy": float(np.max(scores)),
                "derive_mean_val_accuracy": float(np.mean(scores))}

    def response_summary(self, history) -> dict:
        """Means over the epochs of the logged gradient terms and CG statistics."""
        if not history:
            return {}
        mean = lambda k: float(np.mean([h.get(k, 0.0) for h in history]))
        frac = mean("response/computed")
        per = (lambda k: mean(k) / frac) if frac > 0 else (lambda k: 0.0)
        out = {"response": self.config.response,
               "response_steps_fraction": frac,
               "reinforce_grad_norm": mean("response/reinforce_grad_norm"),
               "response_grad_norm": per("response/response_grad_norm"),
               "cosine_reinforce_response": per("response/cosine"),
               "nonfinite_response_steps": per("response/nonfinite"),
               "epoch_seconds_mean": mean("seconds")}
        if self.config.response == "ift":
            out |= {"cg_iterations": per("response/cg_iterations"),
                    "cg_residual": per("response/cg_residual"),
                    "cg_negative_curvature_per_step": per("response/cg_negative_curvature"),
                    "cg_converged_fraction": per("response/cg_converged")}
        for k in history[-1]:
            if k.startswith(("response/dloss_d", "response/dcoupling_d")):
                out[k.split("/", 1)[1]] = per(k)
        return out

    def run(self) -> dict:
        """Search, derive, retrain the best child with its chosen optimizer hyperparameters;
        result.json adds "optimizer_hyperparameters" and "response"."""
        result = super().run()
        with open(os.path.join(self.output_dir, "derived.json")) as f:
            derived = json.load(f)
        result["optimizer_hyperparameters"] = derived["searched_hyperparameters"]
        result["response"] = self.response_summary(result["history"])
        result["config"] = self.config.to_json()
        files.write_json(os.path.join(self.output_dir, "result.json"), result)
        return result
