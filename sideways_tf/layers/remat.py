"""Rematerialization: recompute a block's activations in the backward pass instead of storing them."""

from __future__ import annotations

import keras
import tensorflow as tf


def _contains_batch_norm(layer: keras.layers.Layer) -> bool:
    return any(isinstance(sub, keras.layers.BatchNormalization) for sub in layer._flatten_layers(include_self=True))


@keras.saving.register_keras_serializable(package="sideways_tf")
class Remat(keras.layers.Layer):
    """Wraps a block so that its activations are recomputed during backprop (`tf.recompute_grad`).

    Saves the block's intermediate activations at the price of a second forward pass. A block
    holding batch norm is refused: the recomputation would update its moving statistics twice.

    Args:
      layer: the block to rematerialize; its input and output are single tensors.

    Raises:
      ValueError: when `layer` contains a `BatchNormalization` layer.
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"`layer` must be a keras.layers.Layer; got {type(layer).__name__}.")
        if _contains_batch_norm(layer):
            raise ValueError(
                f"`layer` ({layer.name}) contains BatchNormalization: rematerializing it would update the moving "
                "statistics twice per step. Remat the blocks without batch norm, or use a normalization without "
                "state."
            )
        self.layer = layer

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        @tf.recompute_grad
        def block(inputs):
            return self.layer(inputs, training=training)

        return block(x)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)
