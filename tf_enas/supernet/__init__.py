"""Weight-sharing supernet: Keras layers whose children are int32 vectors."""
from tf_enas.supernet.macro import Supernet, build_child_model, reduction_layers
from tf_enas.supernet.ops import BatchNorm, MaxPool, make_op

__all__ = ["Supernet", "build_child_model", "reduction_layers", "BatchNorm", "MaxPool", "make_op"]
