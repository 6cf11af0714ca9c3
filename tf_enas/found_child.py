"""A found child, rebuilt from its text form for training from scratch (tf-enas-train).

A child's text lives in one of the search spaces ("macro", "micro", "rnn_cell"); the
smallest space that holds it is read off the text (`of_child`), and its model is the
space's supernet's `child_model` with fresh weights. A search's result.json also says how
the child was chosen to be trained: its searched hyperparameters (learning rate,
momentum, weight decay, per-layer L2) and the retrain configuration of the search.
"""
from __future__ import annotations

import dataclasses

import keras

from tf_enas import retrain
from tf_enas.cell_space import SPACES as CELL_SPACES
from tf_enas.space import SearchSpace

SPACES = ("macro", *CELL_SPACES)


def space_of(text: str, space: str = "macro"):
    """(SearchSpace-like, child int32 vector) of a child's text in `space`."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    cls = SearchSpace if space == "macro" else CELL_SPACES[space]
    found = cls.of_child(text)
    return found, found.parse(text)


def build_supernet(space_name: str, space, input_shape, num_classes: int, width: int,
                   num_cells: int = 1, sequence_output: bool = False):
    """The supernet of a space (its weights are what a search shares); sequence_output:
    logits at every step (per-step targets, e.g. a language model: rnn_cell only)."""
    _check_sequence_output(space_name, sequence_output)
    if space_name == "micro":
        from tf_enas.supernet.micro import MicroSupernet
        return MicroSupernet(space, input_shape, num_classes, width=width, num_cells=num_cells)
    if space_name == "rnn_cell":
        from tf_enas.supernet.rnn_cell import RNNSupernet
        return RNNSupernet(space, input_shape, num_classes, width=width,
                           sequence_output=sequence_output)
    from tf_enas.supernet import Supernet
    return Supernet(space, input_shape, num_classes, width=width)


def _check_sequence_output(space_name: str, sequence_output: bool) -> None:
    if sequence_output and space_name != "rnn_cell":
        raise ValueError(f"per-step targets (a language model) need space 'rnn_cell'; space "
                         f"{space_name!r} gives one prediction per example")


def child_model(text: str, input_shape, num_classes: int, width: int, space: str = "macro",
                num_cells: int = 1, dropout: float = 0.0, drop_path: float = 0.0,
                sequence_output: bool = False) -> keras.Model:
    """A standalone Keras model of the child `text` with fresh weights (drop_path: micro
    only, DropPath's final rate; sequence_output: see build_supernet)."""
    found, child = space_of(text, space)
    _check_sequence_output(space, sequence_output)
    if space == "macro":
        from tf_enas.supernet import build_child_model
        if found.num_layers == 0:
            raise ValueError(f"child {text!r}: needs at least one layer, like "
                             f"'conv3 | conv5+0'")
        return build_child_model(found, child, input_shape, num_classes, width, dropout)
    supernet = build_supernet(space, found, input_shape, num_classes, width, num_cells,
                              sequence_output)
    return supernet.child_model(child, inherit_weights=False, width=width, dropout=dropout,
                                **({"drop_path": drop_path} if drop_path else {}))


def from_result(result: dict) -> dict:
    """What a search's result.json says about training its child: {"architecture",
    "space", "num_cells", "width", "hyperparameters" (the searched ones and the grid
    choices), "retrain" (the search's RetrainConfig)}."""
    config = result.get("config", {})
    hp = result.get("hyperparameters", {})
    retrain_fields = {f.name for f in dataclasses.fields(retrain.RetrainConfig)}
    return {"architecture": result["architecture"],
            "space": config.get("space", "macro"),
            "num_cells": config.get("num_cells", 1),
            "width": config.get("width"),
            "hyperparameters": {k: v for k, v in hp.items() if k != "retrain"},
            "retrain": retrain.RetrainConfig(**{k: v for k, v in hp.get("retrain", {}).items()
                                                if k in retrain_fields})}
