"""ENAS's cell search spaces: the micro (convolutional cell) space and the recurrent cell
space, with the interface the search loop uses (SearchSpace's: decisions, choices,
choice_index, validate, random, hyperparameters, to_string, parse, architecture).

A child is an int32 vector: the cells' decisions first, then each optimizer choice.

Micro (`MicroSpace`): a normal and a reduction cell of B nodes. Node i of a cell picks two
inputs among the cell's two inputs (0: the cell before the previous one, 1: the previous
one) and nodes 2..i+1, and one op for each; decisions per node, in ENAS's order:

    index_0 ∈ [0, i+2), index_1 ∈ [0, i+2), op_0 ∈ ops, op_1 ∈ ops

Text form: each cell as its nodes separated by ",", a node as "in0:op0+in1:op1":

    "normal: 0:sepconv3+1:identity, 2:avgpool3+0:maxpool3 ; reduce: ... ; learning_rate=0.05"

The cell output averages the loose ends (nodes no later node reads; the cell's inputs are
never in it).

Recurrent (`RNNCellSpace`): N nodes; node 0 reads (x_t, h_{t−1}) and picks an activation,
node i ≥ 1 picks an earlier node and an activation:

    node_0/act, then for i ≥ 1: node_i/input ∈ [0, i), node_i/act ∈ activations

Text form: "tanh | 0:relu | 1:sigmoid | 1:identity ; learning_rate=0.05".

`controller_program()` lists the steps of the controller's walk over the cell decisions
(see cell_controller.py): ("reset",), ("anchor",), ("index", k) and ("op", k).
"""
from __future__ import annotations

import numpy as np

from tf_enas.space import Decision, SearchSpace

MICRO_OPS = ("identity", "sepconv3", "sepconv5", "avgpool3", "maxpool3")
ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")
CELLS = ("normal", "reduce")


class _CellSpace(SearchSpace):
    """Cell decisions (from `_cell_decisions`) followed by the optimizer choices. There are
    no macro layers (num_layers = 0), so SearchSpace's layer code does nothing here."""

    kind = ""

    def __init__(self, num_nodes: int, cell_ops, choices=None):
        super().__init__(0, choices=choices)
        if num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
        self.num_nodes = int(num_nodes)
        self.cell_ops = tuple(cell_ops)
        cell = self._cell_decisions()
        shift = len(cell)
        self.choice_index = {k: i + shift for k, i in self.choice_index.items()}
        self.decisions = tuple(cell) + self.decisions

    def _cell_decisions(self) -> list:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"num_nodes": self.num_nodes,
                "choices": {k: list(v) for k, v in self.choices.items()}}

    def __repr__(self):
        return f"{type(self).__name__}(num_nodes={self.num_nodes}, choices={self.choices})"

    @classmethod
    def of_child(cls, text: str):
        """The smallest space a child's text form lives in: its number of nodes and one
        value per named choice; `space.parse(text)` then gives the child."""
        parts = [p.strip() for p in text.split(";") if p.strip()]
        arch = [p for p in parts if "=" not in p]
        if not arch:
            raise ValueError(f"child {text!r}: no cell in it")
        choices = {}
        for p in parts:
            if "=" in p:
                name, _, value = p.partition("=")
                try:
                    choices[name.strip()] = (float(value),)
                except ValueError:
                    raise ValueError(f"child {text!r}: {p!r} is not name=number") from None
        return cls(cls._count_nodes(arch[0]), choices)

    def _split(self, text: str):
        """(architecture part, choices part) of a text form."""
        parts = [p.strip() for p in text.split(";") if p.strip()]
        arch = [p for p in parts if "=" not in p]
        rest = [p for p in parts if "=" in p]
        return arch, " ; ".join(rest)

    def _op(self, name, text, where):
        if name not in self.cell_ops:
            raise ValueError(f"child {text!r}: {where} op {name!r} is not one of {self.cell_ops}")
        return self.cell_ops.index(name)

    def to_string(self, child) -> str:
        c = self.validate(child)
        parts = self._arch_strings(c)
        parts += [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                  for k, v in self.hyperparameters(c).items()]
        return " ; ".join(parts)

    def parse(self, text: str) -> np.ndarray:
        arch, rest = self._split(text)
        child = super().parse(rest) if self.choices else np.zeros(len(self), np.int32)
        self._parse_arch(arch, text, child)
        return self.validate(child)


class MicroSpace(_CellSpace):
    """ENAS's micro space: a normal and a reduction cell of `num_nodes` nodes each, plus
    optimizer `choices` (name → grid)."""

    kind = "micro"

    def __init__(self, num_nodes: int = 5, choices=None):
        super().__init__(num_nodes, MICRO_OPS, choices)

    @staticmethod
    def _count_nodes(cell_text):
        return len(cell_text.partition(":")[2].split(","))

    def _cell_decisions(self):
        out = []
        self.node_index = {}  # (cell, node) -> (index_0, index_1, op_0, op_1) positions
        for cell in CELLS:
            for i in range(self.num_nodes):
                ks = []
                for s in range(2):
                    ks.append(len(out))
                    out.append(Decision(f"{cell}/node_{i}/index_{s}", "index",
                                        tuple(range(i + 2)), layer=i))
                for s in range(2):
                    ks.append(len(out))
                    out.append(Decision(f"{cell}/node_{i}/op_{s}", "op", self.cell_ops,
                                        layer=i))
                self.node_index[cell, i] = tuple(ks)
        return out

    def cell_arrays(self, child, cell: str) -> tuple[np.ndarray, np.ndarray]:
        """(indices [B, 2], ops [B, 2]) of one cell of `child`."""
        c = np.asarray(child)
        k = np.array([self.node_index[cell, i] for i in range(self.num_nodes)])
        return c[k[:, :2]].astype(np.int32), c[k[:, 2:]].astype(np.int32)

    def loose_ends(self, child, cell: str) -> list[int]:
        """Nodes no later node reads: the cell's output averages them."""
        idx, _ = self.cell_arrays(child, cell)
        used = set(int(j) - 2 for j in idx.ravel() if j >= 2)
        return [i for i in range(self.num_nodes) if i not in used]

    def architecture(self, child) -> list[dict]:
        """One entry per node: {"cell", "node", "inputs": [i0, i1], "ops": [op0, op1],
        "output": whether the cell's output averages it, "op": a one-line label}."""
        out = []
        for cell in CELLS:
            idx, ops = self.cell_arrays(child, cell)
            ends = self.loose_ends(child, cell)
            for n, (i, op) in enumerate(zip(idx, ops)):
                edge = "+".join(f"{a}:{self.cell_ops[o]}" for a, o in zip(i, op))
                out.append({"cell": cell, "node": n, "inputs": [int(a) for a in i],
                            "ops": [self.cell_ops[o] for o in op], "output": n in ends,
                            "op": f"{cell} {n + 2} = {edge}"})
        return out

    def _arch_strings(self, child):
        arch = self.architecture(child)
        return [f"{cell}: " + ", ".join(
            "+".join(f"{i}:{o}" for i, o in zip(n["inputs"], n["ops"]))
            for n in arch if n["cell"] == cell) for cell in CELLS]

    def _parse_arch(self, parts, text, child):
        cells = {}
        for p in parts:
            name, colon, body = p.partition(":")
            if not colon or name.strip() not in CELLS:
                raise ValueError(f"child {text!r}: {p!r} is not 'normal: ...' or 'reduce: ...'")
            cells[name.strip()] = body
        for cell in CELLS:
            if cell not in cells:
                raise ValueError(f"child {text!r}: missing the {cell} cell")
            nodes = [n.strip() for n in cells[cell].split(",")]
            if len(nodes) != self.num_nodes:
                raise ValueError(f"child {text!r}: the {cell} cell needs {self.num_nodes} "
                                 f"nodes, got {len(nodes)}")
            for i, node in enumerate(nodes):
                edges = node.split("+")
                if len(edges) != 2:
                    raise ValueError(f"child {text!r}: {cell} node {i} {node!r} is not "
                                     f"'in:op+in:op'")
                ks = self.node_index[cell, i]
                for s, e in enumerate(edges):
                    j, _, op = e.partition(":")
                    j = j.strip()
                    if not j.isdigit() or int(j) >= i + 2:
                        raise ValueError(f"child {text!r}: {cell} node {i} input {j!r} must "
                                         f"be in [0, {i + 2})")
                    child[ks[s]] = int(j)
                    child[ks[2 + s]] = self._op(op.strip(), text, f"{cell} node {i}")

    def controller_program(self) -> list[tuple]:
        prog = []
        for cell in CELLS:
            prog += [("reset",), ("anchor",), ("anchor",)]
            for i in range(self.num_nodes):
                ks = self.node_index[cell, i]
                prog += [("index", ks[0]), ("index", ks[1]), ("op", ks[2]), ("op", ks[3]),
                         ("anchor",)]
        return prog


class RNNCellSpace(_CellSpace):
    """ENAS's recurrent cell space: `num_nodes` nodes, each an activation and (after the
    first) an earlier node, plus optimizer `choices`."""

    kind = "rnn_cell"

    def __init__(self, num_nodes: int = 8, choices=None):
        super().__init__(num_nodes, ACTIVATIONS, choices)

    @staticmethod
    def _count_nodes(cell_text):
        return len(cell_text.split("|"))

    def _cell_decisions(self):
        out = []
        self.input_index, self.act_index = [-1], []
        for i in range(self.num_nodes):
            if i:
                self.input_index.append(len(out))
                out.append(Decision(f"node_{i}/input", "index", tuple(range(i)), layer=i))
            self.act_index.append(len(out))
            out.append(Decision(f"node_{i}/act", "op", self.cell_ops, layer=i))
        return out

    def cell_arrays(self, child) -> tuple[np.ndarray, np.ndarray]:
        """(inputs [N] (node 0: −1), activations [N])."""
        c = np.asarray(child)
        inputs = np.array([-1] + [c[k] for k in self.input_index[1:]], np.int32)
        return inputs, c[self.act_index].astype(np.int32)

    def loose_ends(self, child) -> list[int]:
        inputs, _ = self.cell_arrays(child)
        used = set(int(j) for j in inputs[1:])
        return [i for i in range(self.num_nodes) if i not in used]

    def architecture(self, child) -> list[dict]:
        """One entry per node: {"node", "input" (−1 for node 0: x_t, h_{t−1}), "act",
        "output": whether h_t averages it, "op": a one-line label}."""
        inputs, acts = self.cell_arrays(child)
        ends = self.loose_ends(child)
        return [{"node": i, "input": int(j), "act": self.cell_ops[a], "output": i in ends,
                 "op": f"{i} = {self.cell_ops[a]}({'x, h' if i == 0 else j})"}
                for i, (j, a) in enumerate(zip(inputs, acts))]

    def _arch_strings(self, child):
        nodes = self.architecture(child)
        return [" | ".join(n["act"] if i == 0 else f"{n['input']}:{n['act']}"
                           for i, n in enumerate(nodes))]

    def _parse_arch(self, parts, text, child):
        if len(parts) != 1:
            raise ValueError(f"child {text!r}: expected one cell like 'tanh | 0:relu'")
        nodes = [n.strip() for n in parts[0].split("|")]
        if len(nodes) != self.num_nodes:
            raise ValueError(f"child {text!r}: this space has {self.num_nodes} nodes, got "
                             f"{len(nodes)}")
        for i, node in enumerate(nodes):
            if i == 0:
                child[self.act_index[0]] = self._op(node, text, "node 0")
                continue
            j, colon, act = node.partition(":")
            j = j.strip()
            if not colon or not j.isdigit() or int(j) >= i:
                raise ValueError(f"child {text!r}: node {i} {node!r} must be 'j:act' with j "
                                 f"in [0, {i})")
            child[self.input_index[i]] = int(j)
            child[self.act_index[i]] = self._op(act.strip(), text, f"node {i}")

    def controller_program(self) -> list[tuple]:
        prog = [("reset",)]
        for i in range(self.num_nodes):
            if i:
                prog.append(("index", self.input_index[i]))
            prog += [("op", self.act_index[i]), ("anchor",)]
        return prog


SPACES = {"micro": MicroSpace, "rnn_cell": RNNCellSpace}
