"""ENAS's cell controllers (micro and recurrent) as `Controller`s through its hooks.

The walk over a cell space follows `space.controller_program()`; in the LSTM, with h the
output of a step and the anchors a_j (LSTM outputs stored at ("anchor",) steps, reset at
("reset",)):

    ("index", k):  logit_j = vᵀ tanh(W₁ a_j + W₂ h)   over the current anchors;
                   next input a_index                  (ENAS's attention over earlier nodes)
    ("op", k):     logits = h W_op;  next input the op's embedding
    ("anchor",):   one LSTM step; its output becomes an anchor (next input g_emb)

Logits go through the controller's temperature and tanh_constant; a micro cell's op
logits, as in ENAS's micro controller, through tanh_constant / OP_TANH_REDUCE (ENAS's
op_tanh_reduce 2.5): the op policy stays nearly uniform (at most e^0.88 ≈ 2.4 between
two ops) while the connections are learned. Without it the accuracy reward on shared
weights drives the op policy onto the weightless ops (maxpool3 in almost every slot on
MNIST-1D after 23–38 search epochs), whose children retrain worst. Optimizer choices and
continuous decisions follow, exactly as in `Controller` / `JointController`.
"""
from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tf_enas.controller import Controller
from tf_enas.joint_controller import JointController

tfd = tfp.distributions

OP_TANH_REDUCE = 2.5  # ENAS micro: op logits bounded by tanh_constant / 2.5


class CellWalk:
    """Mixin: the cell decisions of a MicroSpace / RNNCellSpace, before the rest."""

    def _build_heads(self, lstm_size, seed):
        super()._build_heads(lstm_size, seed)
        init = keras.initializers.RandomUniform(-0.1, 0.1, seed=seed + 2)
        n, v = lstm_size, len(self.space.cell_ops)
        self.w_cell_op = tf.Variable(init((n, v)), name="w_cell_op")
        self.cell_op_emb = tf.Variable(init((v, n)), name="cell_op_emb")
        self.w_index_1 = tf.Variable(init((n, n)), name="w_index_1")
        self.w_index_2 = tf.Variable(init((n, n)), name="w_index_2")
        self.v_index = tf.Variable(init((n, 1)), name="v_index")

    def _walk_cells(self, batch_size, state, x, children, seeds, actions, log_probs,
                    entropies):
        g = tf.tile(self.g_emb, [batch_size, 1])
        anchors, anchors_w1 = [], []
        for step in self.space.controller_program():
            if step[0] == "reset":
                anchors, anchors_w1 = [], []
                continue
            h, state = self._lstm(x, state)
            if step[0] == "anchor":
                anchors.append(h)
                anchors_w1.append(h @ self.w_index_1)
                x = g
                continue
            k = step[1]
            if step[0] == "index":
                query = tf.tanh(tf.stack(anchors_w1, 1) + (h @ self.w_index_2)[:, None])
                logits = tf.squeeze(query @ self.v_index, -1)  # [B, len(anchors)]
                logits = self._logits(logits)
            else:
                logits = self._op_logits(h @ self.w_cell_op)
            dist = tfd.Categorical(logits=logits)
            a = dist.sample(seed=seeds[:, k]) if children is None else children[:, k]
            a = tf.cast(a, tf.int32)
            actions.append(a[:, None])
            log_probs.append(dist.log_prob(a)[:, None])
            entropies.append(dist.entropy()[:, None])
            if step[0] == "index":
                x = tf.gather(tf.stack(anchors, 1), a, batch_dims=1)
            else:
                x = tf.gather(self.cell_op_emb, a)
        return state, x


    def _op_logits(self, raw):
        """ENAS's op logits: a micro cell's through tanh_constant / OP_TANH_REDUCE."""
        logits = self._logits(raw)
        if self.config.tanh_constant is None or self.space.kind != "micro":
            return logits
        return logits / OP_TANH_REDUCE


class CellController(CellWalk, Controller):
    """ENAS's micro / recurrent-cell controller (categorical decisions only)."""

    def __init__(self, space, config=None, seed: int = 0, name: str = "cell_controller"):
        super().__init__(space, config, seed=seed, name=name)


class JointCellController(CellWalk, JointController):
    """The cell controller followed by continuous optimizer decisions (JointController)."""

    def __init__(self, space, continuous=(), config=None, seed: int = 0,
                 name: str = "joint_cell_controller"):
        super().__init__(space, continuous, config, seed=seed, name=name)


def make_controller(space, continuous=(), config=None, seed: int = 0):
    """The cell controller for `space`, joint when there are continuous decisions."""
    if continuous:
        return JointCellController(space, continuous, config, seed=seed)
    return CellController(space, config, seed=seed)
