"""Rematerialization: recompute a block's activations in the backward pass instead of storing them."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="sideways_tf")
class Remat(keras.layers.Layer):
    """Wraps a block so that its activations are recomputed during backprop (`keras.remat`).

    Saves the block's intermediate activations at the price of a second forward pass, on every
    Keras backend (`tf.recompute_grad` under TensorFlow, `jax.checkpoint` under JAX). Blocks
    with state (batch norm, dropout seeds) are supported: the block runs statelessly inside the
    rematerialized function and its new state is assigned once, outside it, so the recomputation
    never updates batch-norm statistics a second time.

    Args:
      layer: the block to rematerialize; its input and output are single tensors.
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"`layer` must be a keras.layers.Layer; got {type(layer).__name__}.")
        self.layer = layer

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        trainable, non_trainable = self.layer.trainable_variables, self.layer.non_trainable_variables
        params = [v.value for v in trainable]
        state = [v.value for v in non_trainable]

        def block(inputs, params):
            mapping = list(zip(trainable, params, strict=True)) + list(zip(non_trainable, state, strict=True))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                outputs = self.layer(inputs, training=training)
            return outputs, [scope.get_current_value(v) for v in non_trainable]

        outputs, new_state = keras.remat(block)(x, params)
        for variable, value in zip(self.layer.non_trainable_variables, new_state, strict=True):
            variable.assign(value)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)
