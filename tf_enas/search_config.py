"""SearchConfig: everything one search needs (the binaries fill it from flags)."""
from __future__ import annotations

import dataclasses

from tf_enas import distribute
from tf_enas import hypergrad
from tf_enas import response as response_lib
from tf_enas import retrain as retrain_lib
from tf_enas.controller import ControllerConfig
from tf_enas.joint_controller import DEFAULTS
from tf_enas.decay_groups import PER as WEIGHT_DECAY_PER, decision_name, group_keys
from tf_enas.space import OPS

REWARDS = ("accuracy", "loss")
GROWABLE = ("epochs", "time_budget_s")  # may grow on a rerun; the derived child is then redone
# how a run executes, not what it computes: left out of config.json, so that a run resumes
# under another strategy (its checkpoints read back under any)
RUNTIME = ("strategy", "jit_compile")
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")
SOLVERS = ("cg", "neumann", "exact")
SPACES = ("macro", "micro", "rnn_cell")


@dataclasses.dataclass
class SearchConfig:
    """Everything a search needs; the binaries fill it from flags."""

    dataset: str = "mnist1d"
    dataset_path: str | None = None
    num_samples: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    # search space: architecture, grid choices, continuous optimizer decisions
    num_layers: int = 6
    ops: tuple = OPS
    space: str = "macro"      # "macro", "micro" (ENAS's conv cells) or "rnn_cell"
    num_nodes: int = 5        # micro / rnn_cell: nodes per cell
    num_cells: int = 1        # micro: normal cells per stage (3 stages, 2 reductions)
    choices: dict = dataclasses.field(default_factory=dict)
    continuous: tuple = ()
    ranges: dict = dataclasses.field(default_factory=dict)  # name -> (low, high)
    weight_decay_per: str = "model"   # macro: one λ, one per "layer" group, one per "tensor"
    # supernet and its training (defaults of what is not searched)
    width: int = 64
    batch_size: int = 128
    lr_max: float = 0.05
    lr_min: float = 0.0005
    lr_restart_epochs: int = 10
    momentum: float = 0.9
    l2: float = 2.5e-4
    grad_clip_norm: float = 5.0
    # controller and its objective
    controller: ControllerConfig = dataclasses.field(default_factory=ControllerConfig)
    controller_steps: int = 20
    controller_batch: int = 8
    val_batch_size: int = 256
    reward: str = "accuracy"          # "accuracy" or "loss" (R = −min(L_val, cap))
    reward_loss_cap: float = 5.0
    lookahead_steps: int = 0
    lookahead_batch_size: int = 64
    truncate: int = 0
    lookahead_memory: str = "full"    # unrolled: "full" or "checkpointed" (O(√K) memory)
    # response estimator
    response: str = "none"
    response_weight: float = 1.0
    response_every: int = 1
    solver: str = "cg"
    cg_iterations: int = 5
    cg_tol: float = 1e-2
    cg_damping: float = 1e-2
    neumann_alpha: float = 0.1
    curvature: str = "hessian"        # IFT: "hessian" or "gauss_newton"
    gauss_newton_jvp: str = "reverse"  # IFT, gauss_newton: "reverse" or "central_difference"
    # schedule
    epochs: int = 100
    time_budget_s: float | None = None
    derive_samples: int = 64
    derive_proxy_epochs: int = 0      # 0: rank derive_samples by shared-weight accuracy
    derive_max_params: int = 0        # 0: no budget; N: derive only children of ≤ N parameters
    retrain: retrain_lib.RetrainConfig = dataclasses.field(
        default_factory=retrain_lib.RetrainConfig)
    # execution (tf_enas/distribute.py, docs/distribute.md)
    strategy: str = "default"         # "default", "mirrored" or "multi_worker"
    jit_compile: bool = False         # XLA for the shared-weight step
    mixed_precision: str = "none"     # Keras policy of the supernet's layers

    def validate(self):
        for k, allowed in (("space", SPACES), ("strategy", distribute.STRATEGIES),
                           ("mixed_precision", MIXED_PRECISION),
                           ("weight_decay_per", WEIGHT_DECAY_PER)):
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k} must be one of {allowed}, got {getattr(self, k)!r}")
        if self.jit_compile and self.strategy != "default":
            raise ValueError(f"jit_compile runs under strategy=default only, got "
                             f"strategy={self.strategy}")
        if self.strategy != "default" and self.space != "macro":
            raise ValueError(f"strategy={self.strategy} runs space=macro only (its batch norm "
                             f"is synchronized outside control flow), got space={self.space}")
        positive = ("num_layers", "num_nodes", "num_cells", "width", "batch_size",
                    "controller_steps", "controller_batch",
                    "val_batch_size", "epochs", "derive_samples", "lr_restart_epochs",
                    "response_every", "lookahead_batch_size", "cg_iterations")
        for k in positive:
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        for k in ("derive_proxy_epochs", "derive_max_params"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)}")
        if not 0 < self.lr_min <= self.lr_max:
            raise ValueError(f"need 0 < lr_min <= lr_max, got lr_min={self.lr_min}, "
                             f"lr_max={self.lr_max}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.l2 < 0 or self.grad_clip_norm <= 0:
            raise ValueError("l2 must be >= 0 and grad_clip_norm > 0")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be > 0, got {self.time_budget_s}")
        for k, allowed in (("reward", REWARDS), ("response", tuple(response_lib.ESTIMATORS)),
                           ("solver", SOLVERS), ("curvature", response_lib.CURVATURES),
                           ("gauss_newton_jvp", response_lib.JVPS)):
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k} must be one of {allowed}, got {getattr(self, k)!r}")
        unknown = [k for k in self.continuous if k not in DEFAULTS]
        if unknown or len(set(self.continuous)) != len(self.continuous):
            raise ValueError(f"continuous must be distinct names from {tuple(DEFAULTS)}, got "
                             f"{list(self.continuous)}")
        bad = [k for k in self.ranges if k not in self.continuous]
        if bad:
            raise ValueError(f"ranges given for {bad}, which are not continuous decisions")
        if self.weight_decay_per != "model" and ("weight_decay" not in self.continuous
                                                 or self.space != "macro"):
            raise ValueError(f"weight_decay_per={self.weight_decay_per} needs weight_decay "
                             f"among the continuous decisions and space=macro, got "
                             f"continuous={list(self.continuous)}, space={self.space}")
        if self.lookahead_memory not in hypergrad.unrolled.MEMORY:
            raise ValueError(f"lookahead_memory must be one of {hypergrad.unrolled.MEMORY}, "
                             f"got {self.lookahead_memory!r}")
        clash = set(self.continuous) & set(self.choices)
        if clash:
            raise ValueError(f"{sorted(clash)} cannot be both a grid choice and continuous")
        if not 0 <= self.truncate <= self.lookahead_steps:
            raise ValueError(f"need 0 <= truncate <= lookahead_steps, got {self.truncate}")
        if self.cg_damping < 0 or self.reward_loss_cap <= 0 or self.response_weight < 0:
            raise ValueError("need cg_damping >= 0, reward_loss_cap > 0, response_weight >= 0")
        if self.response != "none" and self.reward != "loss":
            raise ValueError(f"response={self.response} estimates the gradient of L_val: it "
                             f"needs reward=loss, got reward={self.reward}")
        if self.response == "unrolled" and (self.lookahead_steps < 1 or not self.continuous):
            raise ValueError("response=unrolled needs lookahead_steps >= 1 and at least one "
                             "continuous decision (the response is ∂L_val(w_K)/∂h)")
        if self.response == "ift" and self.controller_batch < 4:
            raise ValueError(f"response=ift needs controller_batch >= 4, got "
                             f"{self.controller_batch}")
        if "learning_rate" in self.continuous and self.retrain.optimizer != "sgd":
            raise ValueError("the search picks an SGD learning rate: set the retrain "
                             "optimizer to sgd (--retrain_optimizer=sgd)")
        self.retrain.check_space(self.space)
        self.controller.validate()
        self.retrain.validate()
        self.decisions()
        return self

    def decisions(self) -> tuple:
        """The ContinuousDecisions, defaults with `ranges` applied (weight_decay_per "layer"
        or "tensor": "weight_decay" becomes one decision per group, decay_groups.py)."""
        out = []
        for k in self.continuous:
            d = DEFAULTS[k]
            if k in self.ranges:
                low, high = self.ranges[k]
                d = dataclasses.replace(d, low=float(low), high=float(high))
            if k == "weight_decay" and self.weight_decay_per != "model":
                out += [dataclasses.replace(d, name=decision_name(g)).validate()
                        for g in group_keys(self.weight_decay_per, self.num_layers, self.ops)]
            else:
                out.append(d.validate())
        return tuple(out)

    def estimator(self):
        """The configured response estimator."""
        cls = response_lib.ESTIMATORS[self.response]
        if self.response == "unrolled":
            return cls(self.lookahead_steps, self.truncate, self.lookahead_memory)
        if self.response != "ift":
            return cls(self.lookahead_steps, self.truncate)
        solve = hypergrad.make_solver(self.solver, self.cg_iterations, self.cg_tol,
                                      self.cg_damping, alpha=self.neumann_alpha)
        return cls(solve, self.lookahead_steps, self.truncate, self.curvature,
                   self.gauss_newton_jvp)

    def to_json(self) -> dict:
        """The configuration as stored in config.json (without the RUNTIME fields)."""
        out = dataclasses.asdict(self) | {"ops": list(self.ops)}
        for k in RUNTIME:
            out.pop(k)
        return out
