"""Reverse-mode hypergradient through K differentiable optimizer steps (Maclaurin et al. 2015).

d/d(lambda) val_loss(w_K(lambda), lambda), w_{t+1} = step(w_t, grad train_loss(w_t, lambda, t), lambda).

memory="full": the differentiated steps run under one GradientTape, as an unrolled Python
loop or as a tf.while_loop (``loop``), and every step's intermediates are kept (memory
linear in K). ``loop="auto"`` picks a Python loop when the number of differentiated steps
min(T, K) is a Python constant <= 32 (O(K) graph and trace, the cheaper run), a
tf.while_loop otherwise, in particular whenever ``steps`` is a tensor, so that a
``tf.function`` taking K as a tensor never retraces. In the tf.while_loop, while_v2 stores
every intermediate that the backward loop needs in a TensorList, and grappler cannot fold
what it cannot see: an op whose constant operand is computed inside the loop stays general
there: the second derivative of ``w ** 2`` evaluates Pow(w, c - 1), c = 2 - 1 a stored loop
intermediate, elementwise per weight tensor and step; write ``tf.square(w)``.

memory="checkpointed": the steps run once without a tape, keeping (w, s) every L steps,
and each segment is recomputed under a tape in the backward pass (``checkpointed.py``):
memory O(K/L + L) states, one extra forward pass, the same result.
Measured costs: ``tf_enas.benchmarks.hypergrad_cost``.
"""
import tensorflow as tf

from tf_enas.hypergrad import _lists
from tf_enas.hypergrad import checkpointed
from tf_enas.hypergrad import inner_loop

_ZERO = tf.UnconnectedGradients.ZERO
LOOPS = ("auto", "python", "while")
MEMORY = ("full", "checkpointed")
AUTO_PYTHON_MAX_STEPS = 32


def unrolled_hypergradient(train_loss, val_loss, params, hparams, steps, optimizer="sgd",
                           learning_rate=0.1, momentum=0.9, truncate=None, beta2=0.999,
                           epsilon=1e-8, eps_root=1e-16, loop="auto", memory="full",
                           checkpoint_every=None, init_state=None, has_aux=False):
    """(d val_loss(w_K, lambda) / d lambda, w_K) by reverse mode through `steps` optimizer steps.

    train_loss(params, hparams, step) -> scalar (step: int32 tensor, e.g. to pick a
    minibatch); val_loss(params, hparams) -> scalar. optimizer: "sgd", "momentum" (heavy
    ball, ``momentum`` = mu) or "adam" (``momentum`` = beta1). learning_rate, momentum,
    beta2, epsilon: floats or callables of hparams (e.g. ``lambda h: tf.exp(h[0])`` to tune
    the log learning rate). truncate=T: only the last T steps are differentiated; w and the
    optimizer state after the first K-T steps are treated as constants (stop_gradient), so
    the result is d val_loss / d lambda through steps K-T..K-1 only (T >= K: exact).
    Hyperparameters unused by both losses and the optimizer get zero gradients.
    loop: "python", "while" or "auto" (see the module docstring; "python" needs steps and
    truncate as Python ints). memory: "full" (store every step) or "checkpointed" (store
    (w, s) every ``checkpoint_every`` steps, default ceil(sqrt(min(T, K))), and recompute;
    the same hypergradient in memory O(sqrt K)). init_state: the optimizer state to start
    from (a list like ``optimizer.init(params)``, e.g. the velocity of a run in progress;
    default zeros). has_aux: val_loss returns (loss, aux) and aux (not differentiated) is
    returned third. Returns (grads shaped like hparams, w_K[, aux]).
    """
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
    if memory not in MEMORY:
        raise ValueError(f"memory must be one of {MEMORY}, got {memory!r}")
    if memory == "full" and checkpoint_every is not None:
        raise ValueError("checkpoint_every needs memory='checkpointed'")
    if memory == "checkpointed" and loop == "python":
        raise ValueError("memory='checkpointed' runs tf.while_loops; pass loop='auto' or 'while'")
    if memory == "checkpointed":
        checkpointed.segment_length(1, checkpoint_every)  # argument check
    count = inner_loop.static_count(steps, truncate)
    if loop == "python" and count is None:
        raise ValueError("loop='python' needs steps (and truncate) as Python ints; pass "
                         "loop='while' to use a tensor number of steps")
    python = count is not None and (loop == "python" or (
        loop == "auto" and count <= AUTO_PYTHON_MAX_STEPS))
    params, hparams, steps, optimizer, start = inner_loop.prepare(
        params, hparams, steps, optimizer, truncate)
    dtype = params[0].dtype

    def hyper_of(hp):
        return inner_loop.hyperparameters(hp, dtype, learning_rate, momentum, beta2, epsilon,
                                          eps_root)

    frozen = [tf.stop_gradient(h) for h in hparams]
    state = optimizer.init(params)
    if init_state is not None:
        init_state = _lists.as_tensors(init_state)
        if [s.shape for s in init_state] != [s.shape for s in state]:
            raise ValueError(f"init_state must be shaped like the {optimizer.name} state "
                             f"{[tuple(s.shape) for s in state]}, got "
                             f"{[tuple(s.shape) for s in init_state]}")
        state = [tf.cast(s, dtype) for s in init_state]
    aux = []

    def loss_of(w, hp):  # val_loss without its aux (val_loss runs once, outside any loop)
        out = val_loss(w, hp)
        if has_aux:
            out, extra = out
            aux.append(extra)
        return out

    params, state = inner_loop.run(train_loss, optimizer, params, state, frozen,
                                   hyper_of(frozen), 0, start)
    params = [tf.stop_gradient(w) for w in params]
    state = [tf.stop_gradient(s) for s in state]
    if memory == "checkpointed":
        out = checkpointed.reverse(train_loss, loss_of, optimizer, params, state, hparams,
                                   hyper_of, start, steps, checkpoint_every)
        return (*out, aux[0]) if has_aux else out
    with tf.GradientTape() as tape:
        tape.watch(hparams)
        if python:
            final, _ = inner_loop.run_python(train_loss, optimizer, params, state, hparams,
                                             hyper_of(hparams), start, count)
        else:
            final, _ = inner_loop.run(train_loss, optimizer, params, state, hparams,
                                      hyper_of(hparams), start, steps)
        loss = loss_of(final, hparams)
    grads = tape.gradient(loss, hparams, unconnected_gradients=_ZERO)
    out = _lists.zeros_for_none(grads, hparams), [tf.stop_gradient(w) for w in final]
    return (*out, aux[0]) if has_aux else out
