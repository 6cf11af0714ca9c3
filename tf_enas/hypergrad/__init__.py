"""Hypergradients in TensorFlow 2: how a validation loss changes with hyperparameters
through the trained weights (implicit / IFT, unrolled reverse mode, forward mode).

Everything takes pure functions of lists of tensors (``train_loss(params, hparams[, step])``,
``val_loss(params, hparams)``) and runs eagerly and under ``tf.function``. Keras models
enter through ``functional_loss`` (``model.stateless_call``). This package imports nothing
else from tf_enas.
"""
from tf_enas.hypergrad._lists import flatten, num_elements, unflatten
from tf_enas.hypergrad.forward import forward_hypergradient
from tf_enas.hypergrad.hvp import gradient, hessian, hvp, hvp_fn
from tf_enas.hypergrad.implicit import (implicit_hypergradient, inverse_hvp, make_solver,
                                        root_vjp, stationarity)
from tf_enas.hypergrad.keras_loss import functional_loss, model_params
from tf_enas.hypergrad.linear_solvers import (SolverInfo, conjugate_gradient, dense_matrix,
                                              dense_solve, neumann)
from tf_enas.hypergrad.optimizers import adam_step, momentum_step, sgd_step
from tf_enas.hypergrad.unrolled import unrolled_hypergradient

__all__ = [
    "SolverInfo", "adam_step", "conjugate_gradient", "dense_matrix", "dense_solve",
    "flatten", "forward_hypergradient", "functional_loss", "gradient", "hessian", "hvp",
    "hvp_fn",
    "implicit_hypergradient", "inverse_hvp", "make_solver", "model_params", "momentum_step",
    "neumann", "num_elements", "root_vjp", "sgd_step", "stationarity", "unflatten",
    "unrolled_hypergradient",
]
