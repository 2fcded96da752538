"""Activation layers the papers use that Keras lacks."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="sideways_tf")
class HardTanh(keras.layers.Layer):
    """`clip(x, -1, 1)`, the Full-Res network's output nonlinearity. Any shape."""

    def call(self, x):
        return ops.clip(x, -1.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape
