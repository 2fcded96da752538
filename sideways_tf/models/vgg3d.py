"""The 3D baselines: VGG-16 inflated to 3x3x3 kernels and pools, and its causal variant.

Ordinary Keras models over whole clips `[B, T, H, W, C]`, trained with plain backprop.
"""

from __future__ import annotations

import keras

from sideways_tf.layers import Remat, SpaceTimeToDepth
from sideways_tf.models.blocks import check_classes, check_dropout, check_width, scaled
from sideways_tf.models.vgg import VGG16_CONVS, VGG16_FC

# Temporal stride of the 2x2 pools of VGG-16 once inflated: the first keeps time (as in I3D).
POOL_TIME_STRIDES = (1, 2, 2, 2, 2)


def _conv(x, filters: int, causal: bool, name: str, remat: bool = False):
    if causal:  # time padding on the past only; space padded as usual
        layers = [keras.layers.ZeroPadding3D(((2, 0), (1, 1), (1, 1)), name=f"{name}_pad"),
                  keras.layers.Conv3D(filters, 3, padding="valid", use_bias=False, name=f"{name}_conv")]
    else:
        layers = [keras.layers.Conv3D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")]
    layers += [keras.layers.BatchNormalization(name=f"{name}_bn"), keras.layers.ReLU(name=f"{name}_relu")]
    if remat:  # the block's activations are recomputed in the backward pass; batch norm updates once
        return Remat(keras.Sequential(layers, name=name), name=f"{name}_remat")(x)
    for layer in layers:
        x = layer(x)
    return x


def _pool(x, time_stride: int, causal: bool, name: str):
    strides = (time_stride, 2, 2)
    if causal:  # inputs are ReLU outputs (>= 0), so zero padding never wins the max
        x = keras.layers.ZeroPadding3D(((2, 0), (1, 1), (1, 1)), name=f"{name}_pad")(x)
        return keras.layers.MaxPooling3D(3, strides=strides, padding="valid", name=name)(x)
    return keras.layers.MaxPooling3D(3, strides=strides, padding="same", name=name)(x)


def vgg16_3d(num_classes: int, causal: bool = False, dropout: float = 0.0, width: float = 1.0,
             space_to_depth: bool = False, space_time_to_depth: bool = False, per_frame_outputs: bool = False,
             frame_shape=(None, None, 3), remat: bool = False) -> keras.Model:
    """3D VGG-16 (I3D-style inflation): 13 convolutions 3x3x3 with batch norm, 3x3x3 max-pools
    (temporal strides 1, 2, 2, 2, 2; spatial 2), spatial global average pooling, fc6/fc7 4096
    and fc8 applied per remaining time step, logits averaged over time.

    With `causal=True` every convolution and pool is padded in time on the past only, so the
    output at step j depends on frames up to `j * 16` only (16 = the product of temporal strides).

    Args:
      num_classes: the logits' size.
      causal: the papers' Causal 3D VGG16.
      dropout: dropout rate on fc6 and fc7.
      width: scales every hidden width.
      space_to_depth: a 2x2 space-to-depth of every frame first.
      space_time_to_depth: a 2x2x2 space-time-to-depth first (halves T too).
      per_frame_outputs: return `[B, T', num_classes]` (one prediction per remaining time step)
        instead of the clip's `[B, num_classes]`.
      frame_shape: `(H, W, C)` of the input frames; None sizes are left open.
      remat: rematerialize every conv block (conv, batch norm, ReLU) with `sw.layers.Remat`:
        the papers' remat 3D VGG16 baseline (Skip-Sideways Table 4), which trades a second
        forward pass for not storing the blocks' activations.

    Returns:
      A Keras model `[B, T, H, W, C]` -> `[B, num_classes]` (or `[B, T', num_classes]`).
    """
    check_classes(num_classes)
    width = check_width(width)
    dropout = check_dropout(dropout)
    inputs = keras.Input((None, *frame_shape), name="video")
    x = inputs
    if space_to_depth or space_time_to_depth:
        x = SpaceTimeToDepth(2 if space_time_to_depth else 1, 2, name="space_to_depth")(x)
    pool_index = 0
    for i, (filters, pool) in enumerate(VGG16_CONVS):
        x = _conv(x, scaled(filters, width), causal, name=f"conv{i + 1}", remat=remat)
        if pool or i == len(VGG16_CONVS) - 1:
            x = _pool(x, POOL_TIME_STRIDES[pool_index], causal, name=f"pool{pool_index + 1}")
            pool_index += 1
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D(), name="spatial_pool")(x)  # [B, T', C]
    for name, units in zip(("fc6", "fc7"), VGG16_FC, strict=True):
        x = keras.layers.Dense(scaled(units, width), use_bias=False, name=name)(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = keras.layers.Dense(num_classes, name="fc8")(x)
    if not per_frame_outputs:
        x = keras.layers.GlobalAveragePooling1D(name="time_pool")(x)
    name = ("causal_" if causal else "") + ("remat_" if remat else "") + "vgg16_3d"
    return keras.Model(inputs, x, name=name)
