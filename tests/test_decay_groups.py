"""Weight-decay groups: the per-tensor decisions, known from the config, are the built macro
supernet's decayed kernels, one key names a kernel in the supernet and in the found child,
and the retrain names a kernel that its L2 entries miss."""
import numpy as np
import pytest

from tf_enas import retrain
from tf_enas.decay_groups import group_key, is_decayed
from tf_enas.search_config import SearchConfig
from tf_enas.space import OPS, SearchSpace
from tf_enas.supernet import Supernet


@pytest.fixture(scope="module")
def supernet():
    return Supernet(SearchSpace(4, OPS), (16, 1), 10, width=2)


def test_tensor_decisions_are_the_built_supernets_decayed_kernels(supernet):
    """4 layers of the 6 ops: the stem's kernel, 8 per layer (sepconvs have a depthwise
    and a pointwise kernel), the head's: 34 decisions, one per kernel, in variable order."""
    config = SearchConfig(num_layers=4, ops=OPS, continuous=("weight_decay",),
                          weight_decay_per="tensor").validate()
    kernels = [v.path for v in supernet.trainable_variables
               if v.path.split("/")[-1] in ("kernel", "depthwise_kernel", "pointwise_kernel")]
    assert len(kernels) == 34
    assert [d.name for d in config.decisions()] == [
        "weight_decay_" + p.split("/", 1)[1].replace("/", ".") for p in kernels]
    assert [v.path for v in supernet.trainable_variables if is_decayed(v)] == kernels


def test_a_kernel_has_one_key_in_the_supernet_and_in_its_child(supernet):
    space = supernet.space
    child = space.random(np.random.default_rng(0))
    model = supernet.child_model(child, inherit_weights=False)
    own = [v.path for v in model.trainable_variables if is_decayed(v)]
    assert len(own) >= 6
    shared = {group_key("tensor", v.path) for v in supernet.trainable_variables if is_decayed(v)}
    assert {group_key("tensor", p) for p in own} <= shared
    assert all(group_key("tensor", p) == p for p in own)  # the child's path is the key
    assert [group_key("layer", p) for p in own[:2]] == ["stem", "layer_0"]
    assert group_key("model", own[0]) is None


def test_retrain_names_the_kernel_without_an_l2_entry(supernet):
    model = supernet.child_model(supernet.space.random(np.random.default_rng(1)),
                                 inherit_weights=False)
    l2 = {v.path: 1e-3 for v in model.trainable_variables if is_decayed(v)}
    del l2["head/dense/kernel"]
    with pytest.raises(ValueError, match="l2_per_tensor has no entry for 'head/dense/kernel'"):
        retrain.add_l2(model, l2, "tensor")
