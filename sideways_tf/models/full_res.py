"""The Skip-Sideways supplementary material's Full-Res network for frame prediction."""

from __future__ import annotations

import keras

from sideways_tf.layers import DepthToSpace, HardTanh
from sideways_tf.models.blocks import check_width, conv_bn_relu, scaled, stem, unit

FULL_RES_BLOCKS = 8


def full_res(channels: int = 3, space_to_depth: bool = False, width: float = 1.0,
             hidden_bias: bool = False) -> list:
    """Full-Res: 8 blocks of two 3x3 stride-1 convolutions (16 conv layers), batch norm before
    each ReLU, a 3x3 stride-1 max-pool after every block but the last; 64 channels in the first
    two blocks and 32 after; the last convolution maps to RGB with a hard tanh. One block per
    unit; the spatial size is preserved everywhere.

    Args:
      channels: output channels (3, RGB).
      space_to_depth: start with a 2x2 space-to-depth; the last unit then ends with its inverse
        so that predictions keep the frame's size.
      width: scales every hidden width.
      hidden_bias: biases on the hidden convolutions too.

    Returns:
      8 units; frames `[B, H, W, C]` -> predicted frames `[B, H, W, channels]` in [-1, 1].
    """
    check_width(width)
    units = []
    for block in range(FULL_RES_BLOCKS):
        filters = scaled(64 if block < 2 else 32, width)
        layers = stem(space_to_depth) if block == 0 else []
        layers += conv_bn_relu(filters, 3, use_bias=hidden_bias, name=f"block{block + 1}_1")
        if block < FULL_RES_BLOCKS - 1:
            layers += conv_bn_relu(filters, 3, use_bias=hidden_bias, name=f"block{block + 1}_2")
            layers.append(keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"block{block + 1}_pool"))
        else:
            out = channels * 4 if space_to_depth else channels
            layers.append(keras.layers.Conv2D(out, 3, padding="same", name="to_rgb"))
            if space_to_depth:
                layers.append(DepthToSpace(2, name="depth_to_space"))
            layers.append(HardTanh(name="hard_tanh"))
        units.append(unit(layers, f"block{block + 1}"))
    return units
