"""Weight-sharing supernet: Keras layers whose children are int32 vectors. Importing this
package registers every layer a saved child model (macro, micro, rnn_cell) uses."""
from tf_enas.supernet import micro, rnn_cell  # noqa: F401  (register their layers)
from tf_enas.supernet.macro import Supernet, build_child_model, reduction_layers
from tf_enas.supernet.ops import BatchNorm, MaxPool, make_op

__all__ = ["Supernet", "build_child_model", "reduction_layers", "BatchNorm", "MaxPool", "make_op"]
