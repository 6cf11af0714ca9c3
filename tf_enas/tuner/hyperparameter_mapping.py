"""keras-tuner HyperParameters → categorical controller decisions, and back to values.

Every tunable hyperparameter becomes one categorical decision over a finite grid:

* Choice → its values (in the user's order); Boolean → (False, True).
* Int / Float with a step → every value of the step grid (linear: min + k·step;
  log / reverse_log: the ×step grid), ascending; a grid longer than `max_categories`
  is replaced by the quantile grid below (whose values keras-tuner still snaps to the step).
* Int / Float without a step → the quantile grid q_k = (k + ½)/grid_size, k < grid_size,
  mapped through keras-tuner's `hp.prob_to_value` (so log and reverse_log sampling keep
  their spacing; an Int grid drops duplicates).
* Fixed, and any grid of a single value → no decision: the value is returned as is.

Decisions are ordered parents before children (a stable topological sort of the space, so
keras-tuner's insertion order is kept where it is already valid). A hyperparameter is
*active* when all its conditions hold on the active values decided before it (and no
earlier active hyperparameter of the same name has a value). Inactive decisions are not
decided: they hold index 0 (a canonical value that later decisions condition on) and are
masked out of the REINFORCE update.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import re
from typing import Callable, Sequence

import numpy as np

from tf_enas.space import SearchSpace


@dataclasses.dataclass(frozen=True)
class Decision:
    """One categorical decision: the hyperparameter `hp` picks one of `values`."""

    key: str
    name: str
    values: tuple
    hp: object = dataclasses.field(compare=False, repr=False)


def plain(v):
    """numpy scalars → Python scalars (keras-tuner's JSON and protos need plain values)."""
    return v.item() if isinstance(v, np.generic) else v


def hp_key(hp) -> str:
    """Identity of a hyperparameter in keras-tuner: its name and its conditions."""
    conditions = [[type(c).__name__, c.get_config()] for c in hp.conditions]
    return json.dumps([hp.name, conditions], sort_keys=True, default=str)


def _kind(hp) -> str:
    return type(hp).__name__  # Fixed, Boolean, Choice, Int, Float


def value_grid(hp, grid_size: int = 10, max_categories: int = 64) -> tuple | None:
    """The values a decision for `hp` picks from; None for a Fixed hyperparameter."""
    kind = _kind(hp)
    if kind == "Fixed":
        return None
    if kind == "Boolean":
        return (False, True)
    if kind == "Choice":
        return tuple(plain(v) for v in hp.values)
    if kind not in ("Int", "Float"):
        raise TypeError(f"unsupported hyperparameter type {kind} for {hp.name!r}")
    cast = int if kind == "Int" else float
    grid = None
    if hp.step is not None:
        # Numerical.values enumerates the step grid lazily; stop past max_categories.
        grid = list(itertools.islice(hp.values, max_categories + 1))
        if len(grid) > max_categories:
            grid = None
    if grid is None:
        grid = [hp.prob_to_value((k + 0.5) / grid_size) for k in range(grid_size)]
    grid = sorted({cast(plain(v)) for v in grid})
    return tuple(grid)


def ordered(space: Sequence) -> list:
    """Stable topological order of keras-tuner hyperparameters: every hyperparameter after
    all hyperparameters named in its conditions (cycles keep their given order)."""
    names = {hp.name for hp in space}
    remaining, out, placed = list(space), [], set()
    while remaining:
        todo = {hp.name for hp in remaining}
        ready = [hp for hp in remaining
                 if all(c.name not in todo or c.name == hp.name
                        for c in hp.conditions if hasattr(c, "name") and c.name in names)]
        if not ready:  # a cycle: keep the given order
            ready = remaining[:1]
        out += ready
        placed |= {id(hp) for hp in ready}
        remaining = [hp for hp in remaining if id(hp) not in placed]
    return out


def _variable_name(index: int, name: str) -> str:
    return f"d{index}_" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]


def search_space_of(layout) -> SearchSpace:
    """The choices-only SearchSpace of a layout [[key, values], ...] (controller input)."""
    return SearchSpace(0, choices={_variable_name(i, json.loads(key)[0]): tuple(values)
                                   for i, (key, values) in enumerate(layout)})


class HyperParameterMapping:
    """The decisions of a keras-tuner space, and the walk that turns indices into values.

    Args:
      hyperparameters: a keras_tuner.HyperParameters (its `space` is read, not kept).
      grid_size: quantiles for an Int/Float without step (or with too many steps).
      max_categories: the longest step grid kept as is.
    """

    def __init__(self, hyperparameters, grid_size: int = 10, max_categories: int = 64):
        if grid_size < 2 or max_categories < 2:
            raise ValueError(f"grid_size and max_categories must be >= 2, got {grid_size}, "
                             f"{max_categories}")
        self.grid_size, self.max_categories = grid_size, max_categories
        self.entries = []  # (hp, decision index or None, fixed value)
        decisions = []
        for hp in ordered(hyperparameters.space):
            grid = value_grid(hp, grid_size, max_categories)
            if grid is None or len(grid) == 1:
                fixed = plain(hp.value) if grid is None else grid[0]
                self.entries.append((hp, None, fixed))
            else:
                self.entries.append((hp, len(decisions), None))
                decisions.append(Decision(hp_key(hp), hp.name, grid, hp))
        self.decisions = tuple(decisions)

    def __len__(self):
        return len(self.decisions)

    @property
    def layout(self) -> list:
        """JSON-safe description of the decisions: [[key, [values...]], ...]."""
        return [[d.key, list(d.values)] for d in self.decisions]

    def search_space(self) -> SearchSpace:
        """A choices-only SearchSpace with one choice per decision, in this order."""
        return search_space_of(self.layout)

    def resolve(self, choose: Callable[[int, np.ndarray], int]):
        """Walks the space in order; `choose(k, child)` picks decision k's index given the
        indices decided so far (only called for active decisions).

        Returns (child int32 [D], mask float32 [D] of the active decisions, values dict of
        the active hyperparameters, plain Python values).
        """
        child = np.zeros(len(self.decisions), np.int32)
        mask = np.zeros(len(self.decisions), np.float32)
        values = {}
        for hp, k, fixed in self.entries:
            if hp.name in values or not all(c.is_active(values) for c in hp.conditions):
                continue
            if k is None:
                values[hp.name] = fixed
                continue
            index = int(choose(k, child))
            grid = self.decisions[k].values
            if not 0 <= index < len(grid):
                raise ValueError(f"index {index} out of range for {hp.name!r} ({len(grid)} "
                                 f"values)")
            child[k], mask[k] = index, 1.0
            values[hp.name] = grid[index]
        return child, mask, values
