"""Remat: same values and gradients as the plain block; refuses batch norm."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sideways_tf.layers import HardTanh, Remat


def _block():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.layers.Conv2D(4, 3, padding="same"), keras.layers.ReLU(),
                             keras.layers.Conv2D(2, 3, padding="same")])


def test_same_outputs_and_gradients_as_the_plain_block():
    x = tf.random.normal((2, 6, 6, 3))
    plain, wrapped_block = _block(), _block()
    remat = Remat(wrapped_block)
    plain.build(x.shape)
    remat.build(x.shape)
    wrapped_block.set_weights(plain.get_weights())
    grads = []
    for layer in (plain, remat):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) ** 2)
        grads.append(tape.gradient(loss, [x] + [v.value for v in layer.trainable_variables]))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_refuses_batch_norm():
    with pytest.raises(ValueError, match="BatchNormalization"):
        Remat(keras.Sequential([keras.layers.Dense(3), keras.layers.BatchNormalization()]))
    with pytest.raises(ValueError, match="`layer` must be a keras.layers.Layer"):
        Remat("dense")


def test_hard_tanh():
    np.testing.assert_allclose(HardTanh()(tf.constant([-3.0, -0.5, 0.2, 7.0])), [-1.0, -0.5, 0.2, 1.0], rtol=1e-6)
