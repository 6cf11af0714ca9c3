"""SearchSpace: the named decisions of one search, architecture and optimizer together.

A child is an int32 vector with one entry per decision, in the space's order:

    for each layer i:  op_i ∈ [0, len(ops)),  then skip_{i,j} ∈ {0, 1} for j < i
    then each optimizer choice (an index into its grid of values)

Its readable form lists the layers separated by "|", each as an op name with the earlier
layers it adds as skip connections after "+", then the choices as name=value:

    "conv3 | sepconv5 | maxpool3+0,1 ; learning_rate=0.05 ; weight_decay=0.0001"
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

OPS = ("conv3", "conv5", "sepconv3", "sepconv5", "avgpool3", "maxpool3")


@dataclasses.dataclass(frozen=True)
class Decision:
    """One categorical decision. kind: "op" (layer's op), "skip" (edge j→i) or "choice"."""

    name: str
    kind: str
    values: tuple
    layer: int = -1   # for op and skip decisions
    source: int = -1  # for skip decisions: the earlier layer j

    @property
    def num_values(self) -> int:
        return len(self.values)


def _format_value(v) -> str:
    return repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)


class SearchSpace:
    """An ENAS macro space of `num_layers` layers plus optimizer choices, in one space.

    Args:
      num_layers: number of searched layers (0 for a space of choices only).
      ops: op names each layer chooses from (a subset of OPS, in the supernet's order).
      choices: ordered mapping name → grid of values (e.g. learning_rate, weight_decay).
    """

    def __init__(self, num_layers: int = 0, ops: Sequence[str] = OPS,
                 choices: Mapping[str, Sequence] | None = None):
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        unknown = [o for o in ops if o not in OPS]
        if unknown or not ops:
            raise ValueError(f"ops must be a non-empty subset of {OPS}, got {list(ops)}")
        self.num_layers = int(num_layers)
        self.ops = tuple(ops)
        self.choices = {k: tuple(v) for k, v in (choices or {}).items()}
        for k, v in self.choices.items():
            if len(v) < 1:
                raise ValueError(f"choice {k!r} needs at least one value")
        decisions = []
        self.op_index = []
        self.skip_index = []
        for i in range(self.num_layers):
            self.op_index.append(len(decisions))
            decisions.append(Decision(f"layer_{i}/op", "op", self.ops, layer=i))
            row = []
            for j in range(i):
                row.append(len(decisions))
                decisions.append(Decision(f"layer_{i}/skip_{j}", "skip", (0, 1), i, j))
            self.skip_index.append(row)
        self.choice_index = {}
        for k, v in self.choices.items():
            self.choice_index[k] = len(decisions)
            decisions.append(Decision(k, "choice", v))
        self.decisions = tuple(decisions)

    def __len__(self) -> int:
        return len(self.decisions)

    def __repr__(self):
        return (f"SearchSpace(num_layers={self.num_layers}, ops={self.ops}, "
                f"choices={self.choices})")

    def get_config(self) -> dict:
        return {"num_layers": self.num_layers, "ops": list(self.ops),
                "choices": {k: list(v) for k, v in self.choices.items()}}

    @classmethod
    def from_config(cls, config: dict) -> "SearchSpace":
        return cls(**config)

    @classmethod
    def of_child(cls, text: str) -> "SearchSpace":
        """The smallest space a child's text form lives in: its layers (every op) and one
        value per named choice; `space.parse(text)` then gives the child."""
        parts = [p.strip() for p in text.split(";") if p.strip()]
        layers = parts.pop(0) if parts and "=" not in parts[0] else ""
        choices = {}
        for p in parts:
            name, _, value = p.partition("=")
            try:
                choices[name.strip()] = (float(value),)
            except ValueError:
                raise ValueError(f"child {text!r}: {p!r} is not name=number") from None
        return cls(len(layers.split("|")) if layers else 0, OPS, choices)

    @property
    def size(self) -> int:
        """Number of distinct children."""
        return math.prod(d.num_values for d in self.decisions)

    # --- children -------------------------------------------------------------------
    def validate(self, child) -> np.ndarray:
        """Returns `child` as int32 (len(self),) or raises ValueError saying what is wrong."""
        c = np.asarray(child)
        if c.shape != (len(self),):
            raise ValueError(f"a child of this space has {len(self)} decisions, got shape {c.shape}")
        if not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"a child is an integer vector, got dtype {c.dtype}")
        for d, v in zip(self.decisions, c):
            if not 0 <= v < d.num_values:
                raise ValueError(f"decision {d.name!r} must be in [0, {d.num_values}), got {v}")
        return c.astype(np.int32)

    def random(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([rng.integers(d.num_values) for d in self.decisions], np.int32)

    def layer_ops(self, child) -> np.ndarray:
        """(num_layers,) op indices."""
        return np.asarray(child)[self.op_index].astype(np.int32)

    def skip_matrix(self, child) -> np.ndarray:
        """(num_layers, num_layers) 0/1 matrix; [i, j] = 1 when layer j's output is added to layer i."""
        c = np.asarray(child)
        m = np.zeros((self.num_layers, self.num_layers), np.float32)
        for i, row in enumerate(self.skip_index):
            for j, k in enumerate(row):
                m[i, j] = c[k]
        return m

    def hyperparameters(self, child) -> dict:
        """Optimizer choices of `child` as {name: value} (plain Python values)."""
        c = np.asarray(child)
        return {k: _plain(self.choices[k][int(c[i])]) for k, i in self.choice_index.items()}

    def architecture(self, child) -> list[dict]:
        """Layers of `child` as [{"op": name, "skips": [j, ...]}, ...]."""
        ops, skips = self.layer_ops(child), self.skip_matrix(child)
        return [{"op": self.ops[o], "skips": [int(j) for j in np.flatnonzero(skips[i])]}
                for i, o in enumerate(ops)]

    def to_string(self, child) -> str:
        c = self.validate(child)
        parts = []
        layers = " | ".join(
            layer["op"] + ("+" + ",".join(map(str, layer["skips"])) if layer["skips"] else "")
            for layer in self.architecture(c))
        if layers:
            parts.append(layers)
        parts += [f"{k}={_format_value(v)}" for k, v in self.hyperparameters(c).items()]
        return " ; ".join(parts)

    def parse(self, text: str) -> np.ndarray:
        """Inverse of to_string; raises ValueError naming the part it cannot read."""
        child = np.zeros(len(self), np.int32)
        parts = [p.strip() for p in text.split(";") if p.strip()]
        if self.num_layers:
            if not parts or "=" in parts[0]:
                raise ValueError(f"child {text!r}: expected {self.num_layers} layers first, "
                                 f"like 'conv3 | conv5+0'")
            layers = [p.strip() for p in parts.pop(0).split("|")]
            if len(layers) != self.num_layers:
                raise ValueError(f"child {text!r}: this space has {self.num_layers} layers, "
                                 f"got {len(layers)}")
            for i, layer in enumerate(layers):
                op, _, skips = layer.partition("+")
                op = op.strip()
                if op not in self.ops:
                    raise ValueError(f"child {text!r}: layer {i} op {op!r} is not one of {self.ops}")
                child[self.op_index[i]] = self.ops.index(op)
                for s in filter(None, (s.strip() for s in skips.split(","))):
                    if not s.isdigit() or int(s) >= i:
                        raise ValueError(f"child {text!r}: layer {i} skip {s!r} must be an "
                                         f"earlier layer index in [0, {i})")
                    child[self.skip_index[i][int(s)]] = 1
        seen = set()
        for p in parts:
            name, eq, value = p.partition("=")
            name = name.strip()
            if not eq or name not in self.choices:
                raise ValueError(f"child {text!r}: {p!r} is not name=value for a choice in "
                                 f"{list(self.choices)}")
            grid = self.choices[name]
            idx = [n for n, v in enumerate(grid) if _format_value(v) == value.strip()
                   or str(v) == value.strip().strip("'\"")]
            if not idx:
                try:
                    idx = [n for n, v in enumerate(grid) if float(v) == float(value)]
                except (TypeError, ValueError):
                    pass
            if not idx:
                raise ValueError(f"child {text!r}: {name} must be one of {list(grid)}, got {value!r}")
            child[self.choice_index[name]] = idx[0]
            seen.add(name)
        missing = set(self.choices) - seen
        if missing:
            raise ValueError(f"child {text!r}: missing values for {sorted(missing)}")
        return child

    # --- keras-tuner ------------------------------------------------------------------
    def to_hyperparameters(self):
        """This space as keras_tuner.HyperParameters (one Choice per decision)."""
        import keras_tuner as kt

        hp = kt.HyperParameters()
        for d in self.decisions:
            hp.Choice(d.name, [_plain(v) for v in d.values])
        return hp

    def child_from_values(self, values: Mapping) -> np.ndarray:
        """Child whose decision `name` takes `values[name]` (by value, as in HyperParameters)."""
        child = np.zeros(len(self), np.int32)
        for n, d in enumerate(self.decisions):
            if d.name not in values:
                raise ValueError(f"no value for decision {d.name!r}")
            matches = [k for k, v in enumerate(d.values) if v == values[d.name]]
            if not matches:
                raise ValueError(f"decision {d.name!r} must be one of {list(d.values)}, "
                                 f"got {values[d.name]!r}")
            child[n] = matches[0]
        return child


def _plain(v):
    """numpy scalars → Python scalars (keras-tuner's JSON and protos need plain values)."""
    return v.item() if isinstance(v, np.generic) else v
