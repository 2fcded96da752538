"""The backend-specific VJP against hand-derived gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sideways_tf.core.autodiff import value_and_vjp


def test_cotangent_vjp_of_a_dense_layer():
    layer = keras.layers.Dense(3, activation=None)
    x = tf.random.normal((2, 4))
    layer.build(x.shape)
    cot = tf.random.normal((2, 3))
    out, head_value, (dx,), (dk, db) = value_and_vjp(layer, [x], layer.trainable_variables, cotangent=cot)
    assert head_value is None
    np.testing.assert_allclose(out, x @ layer.kernel + layer.bias, rtol=1e-6)
    np.testing.assert_allclose(dx, cot @ tf.transpose(layer.kernel), rtol=1e-5)
    np.testing.assert_allclose(dk, tf.transpose(x) @ cot, rtol=1e-5)
    np.testing.assert_allclose(db, tf.reduce_sum(cot, 0), rtol=1e-5)


def test_head_gradient_and_unconnected_zeros():
    used, unused = keras.Variable(2.0), keras.Variable(5.0)
    x = tf.constant([1.0, 3.0])
    out, loss, (dx,), (d_used, d_unused) = value_and_vjp(
        lambda v: v * used, [x], [used, unused], head=lambda o: tf.reduce_sum(o**2))
    assert float(loss) == pytest.approx(40.0)
    np.testing.assert_allclose(dx, 2 * x * 4.0)
    assert float(d_used) == pytest.approx(2 * 2.0 * 10.0) and float(d_unused) == 0.0


def test_needs_exactly_one_of_cotangent_and_head():
    with pytest.raises(ValueError, match="exactly one"):
        value_and_vjp(lambda: tf.constant(1.0), [], [])
