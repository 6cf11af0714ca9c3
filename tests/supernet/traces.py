"""How many graphs a supernet's gradient step traces over 20 distinct sampled children."""
import numpy as np
import tensorflow as tf


def traces_over_twenty_children(net, space, x, draws=60) -> int:
    traces = []

    @tf.function
    def step(x, child):
        traces.append(1)  # runs at trace time only
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(net(x, child, training=True) ** 2)
        return tape.gradient(loss, net.trainable_variables)

    rng = np.random.default_rng(0)
    children = {space.to_string(c): c for c in (space.random(rng) for _ in range(draws))}
    assert len(children) >= 20, "the space has fewer than 20 distinct children"
    for c in list(children.values())[:20]:
        step(x, tf.constant(c))
    return len(traces)
