"""Which L2 coefficient decays which kernel of the macro supernet (`weight_decay_per`):

    L_train = CE + Σ_k λ_{g(k)}‖W_k‖²,   g(k) = the model ("model"), k's layer group
              ("layer": stem, layer_i, head) or kernel k itself ("tensor")

Each group's λ is the continuous decision `decision_name(key)`. A kernel's key is read off
its path from its layer group on, so one key names the supernet's kernel
("supernet/layer_0/conv3/conv/kernel") and the found child's ("layer_0/conv3/conv/kernel");
the keys follow from the config before the supernet is built (`group_keys`).
"""
from __future__ import annotations

import re

from tf_enas.supernet.macro import kernel_paths

PER = ("model", "layer", "tensor")
RESULT_KEYS = {"layer": "l2_per_layer", "tensor": "l2_per_tensor"}  # result.json: {key: λ}
KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")
_GROUP = re.compile(r"^(stem|head|layer_\d+)$")


def is_decayed(variable) -> bool:
    """Weight decay applies to kernels (not biases, not batch-norm scales and shifts)."""
    return variable.path.split("/")[-1] in KERNELS


def layer_groups(num_layers: int) -> tuple:
    """The layer groups of a macro supernet, in order."""
    return ("stem", *(f"layer_{i}" for i in range(num_layers)), "head")


def group_key(per: str, path: str) -> str | None:
    """The key of the weight at `path` under `per`: its layer group ("layer"), its path from
    the layer group on ("tensor"); None for "model" or a path outside every layer group."""
    parts = path.split("/")
    start = next((i for i, p in enumerate(parts) if _GROUP.match(p)), None)
    if per == "model" or start is None:
        return None
    return parts[start] if per == "layer" else "/".join(parts[start:])


def group_keys(per: str, num_layers: int, ops) -> tuple:
    """The keys of the λ groups in decision order (none for "model")."""
    if per == "layer":
        return layer_groups(num_layers)
    if per == "tensor":
        return kernel_paths(num_layers, ops)
    return ()


def decision_name(key: str) -> str:
    """The continuous decision of group `key`: "weight_decay_<key>", '/' written '.' (a name
    that is a TensorBoard tag part, a policy variable's name and a result.json key)."""
    return "weight_decay_" + key.replace("/", ".")
