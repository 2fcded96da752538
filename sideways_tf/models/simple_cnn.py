"""The Sideways paper's Simple-CNN and its auto-encoder."""

from __future__ import annotations

import keras

from sideways_tf.models.blocks import check_classes, check_width, scaled, stem, unit

SIMPLE_CNN_CHANNELS = (32, 64, 64, 128, 256)
SIMPLE_CNN_STRIDES = (2, 1, 2, 1, 2)


def _encoder(space_to_depth: bool, width: float, hidden_bias: bool) -> list:
    units = []
    for i, (channels, stride) in enumerate(zip(SIMPLE_CNN_CHANNELS, SIMPLE_CNN_STRIDES, strict=True)):
        layers = stem(space_to_depth) if i == 0 else []
        layers += [keras.layers.Conv2D(scaled(channels, width), 3, strides=stride, padding="same",
                                       use_bias=hidden_bias, name=f"conv{i + 1}"),
                   keras.layers.ReLU(name=f"conv{i + 1}_relu")]
        units.append(unit(layers, f"conv{i + 1}"))
    return units


def simple_cnn(num_classes: int, space_to_depth: bool = False, width: float = 1.0,
               hidden_bias: bool = False) -> list:
    """Simple-CNN: 5 conv layers 3x3 with (32, 64, 64, 128, 256) channels, stride 2 in layers 1, 3
    and 5, each followed by ReLU; then global average pooling and a linear layer. 6 units.

    Args:
      num_classes: the logits' size.
      space_to_depth: start the first unit with a 2x2 space-to-depth of the frame.
      width: scales every hidden width.
      hidden_bias: biases on the hidden layers too (the papers: on the last layer only).

    Returns:
      The 6 units; frames `[B, H, W, C]` -> logits `[B, num_classes]`.
    """
    check_classes(num_classes)
    check_width(width)
    head = unit([keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(num_classes, name="logits")],
                "logits")
    return _encoder(space_to_depth, width, hidden_bias) + [head]


def encoder_decoder(channels: int = 3, space_to_depth: bool = False, width: float = 1.0,
                    hidden_bias: bool = False) -> list:
    """The Sideways paper's auto-encoder: the Simple-CNN encoder as 5 units and the symmetric
    5-block transposed-convolution decoder as one last unit (ordinary backprop inside it).

    Args:
      channels: the reconstructed frame's channels.
      space_to_depth: start with a 2x2 space-to-depth; the decoder then ends with its inverse.
      width: scales every hidden width.
      hidden_bias: biases on the hidden layers too.

    Returns:
      The 6 units; frames `[B, H, W, C]` -> reconstructions `[B, H, W, channels]` (H, W multiples
      of 8, or of 16 with space-to-depth).
    """
    from sideways_tf.layers import DepthToSpace

    check_width(width)
    decoder = []
    reversed_channels = list(SIMPLE_CNN_CHANNELS[::-1][1:])
    out_channels = channels * 4 if space_to_depth else channels
    for i, stride in enumerate(SIMPLE_CNN_STRIDES[::-1]):
        last = i == len(SIMPLE_CNN_STRIDES) - 1
        filters = out_channels if last else scaled(reversed_channels[i], width)
        decoder.append(keras.layers.Conv2DTranspose(filters, 3, strides=stride, padding="same",
                                                    use_bias=last or hidden_bias, name=f"deconv{i + 1}"))
        if not last:
            decoder.append(keras.layers.ReLU(name=f"deconv{i + 1}_relu"))
    if space_to_depth:
        decoder.append(DepthToSpace(2, name="depth_to_space"))
    return _encoder(space_to_depth, width, hidden_bias) + [unit(decoder, "decoder")]


def small_cnn(num_classes: int, width: float = 1.0, space_to_depth: bool = False) -> list:
    """A small 6-unit network for quick runs on a CPU (the quickstart): 4 conv units 3x3 with
    batch norm (16, 32, 32, 64 channels, stride 2 in the second and fourth), a hidden dense unit
    on global average pooling, and the logits.

    Args:
      num_classes: the logits' size.
      width: scales every hidden width.
      space_to_depth: start with a 2x2 space-to-depth.

    Returns:
      6 units; frames `[B, H, W, C]` -> logits `[B, num_classes]`.
    """
    from sideways_tf.models.blocks import conv_bn_relu, dense_relu

    check_classes(num_classes)
    check_width(width)
    units = []
    for i, (channels, stride) in enumerate(((16, 1), (32, 2), (32, 1), (64, 2))):
        layers = stem(space_to_depth) if i == 0 else []
        units.append(unit(layers + conv_bn_relu(scaled(channels, width), 3, stride, name=f"conv{i + 1}"),
                          f"conv{i + 1}"))
    units.append(unit([keras.layers.GlobalAveragePooling2D(name="pool"),
                       *dense_relu(scaled(64, width), name="fc5")], "fc5"))
    units.append(unit([keras.layers.Dense(num_classes, name="logits")], "logits"))
    return units
