"""VGG-8 (the two-stream RGB network) and VGG-16, split into Sideways units.

The max-pool that ends the convolutional stack belongs to the first fully connected unit
(it runs on that unit's fused input), so that every shortcut of the skip modes joins
activations whose spatial sizes are integer multiples of each other.
"""

from __future__ import annotations

from typing import Callable, Optional

import keras

from sideways_tf.models.blocks import (
    check_classes,
    check_dropout,
    check_width,
    conv_bn_relu,
    dense_relu,
    scaled,
    stem,
    unit,
)

# (filters, kernel, stride, pool after) of VGG-8's convolutions; then fc6, fc7.
VGG8_CONVS = ((96, 7, 2, True), (256, 5, 2, True), (512, 3, 1, False), (512, 3, 1, False), (512, 3, 1, False))
VGG8_FC = (4096, 2048)
# VGG-16's 13 convolutions (filters, pool after); the fifth block's pool goes to fc6.
VGG16_CONVS = ((64, False), (64, True), (128, False), (128, True), (256, False), (256, False), (256, True),
               (512, False), (512, False), (512, True), (512, False), (512, False), (512, False))
VGG16_FC = (4096, 4096)


def _fc6(filters: int, dropout: float, hidden_bias: bool) -> list:
    return [keras.layers.MaxPooling2D(2, name="pool5"), keras.layers.Flatten(name="flatten"),
            *dense_relu(filters, dropout, hidden_bias, name="fc6")]


def vgg8(num_classes: int, width: float = 1.0, dropout: float = 0.0, space_to_depth: bool = False,
         hidden_bias: bool = False) -> list:
    """VGG-8: conv1 96@7x7/2, conv2 256@5x5/2, conv3-5 512@3x3, 2x2 max-pools after conv1, conv2
    and conv5, fc6 4096, fc7 2048, fc8 logits; batch norm between each convolution and its ReLU,
    dropout on fc6 and fc7. 8 units, one weight layer each.

    Args:
      num_classes: the logits' size.
      width: scales every hidden width (the papers' "wide" model; see `wide_vgg8_width`).
      dropout: dropout rate on fc6 and fc7.
      space_to_depth: start with a 2x2 space-to-depth of the frame.
      hidden_bias: biases on the hidden layers too (the papers: on the last layer only).

    Returns:
      The 8 units; frames `[B, H, W, C]` (H, W multiples of 32) -> logits `[B, num_classes]`.
    """
    check_classes(num_classes)
    width = check_width(width)
    dropout = check_dropout(dropout)
    units = []
    for i, (filters, kernel, stride, pool) in enumerate(VGG8_CONVS):
        layers = stem(space_to_depth) if i == 0 else []
        layers += conv_bn_relu(scaled(filters, width), kernel, stride, hidden_bias, name=f"conv{i + 1}")
        if pool:
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool{i + 1}"))
        units.append(unit(layers, f"conv{i + 1}"))
    units.append(unit(_fc6(scaled(VGG8_FC[0], width), dropout, hidden_bias), "fc6"))
    units.append(unit(dense_relu(scaled(VGG8_FC[1], width), dropout, hidden_bias, name="fc7"), "fc7"))
    units.append(unit([keras.layers.Dense(num_classes, name="fc8")], "fc8"))
    return units


def vgg8_num_params(num_classes: int, width: float = 1.0, resolution: int = 112, space_to_depth: bool = False,
                    fusion: Optional[str] = None) -> int:
    """VGG-8's parameter count (batch-norm statistics included), without building it.

    Args:
      num_classes, width, space_to_depth: as in `vgg8`.
      resolution: the frame's height and width.
      fusion: None for the plain network; `"concat"` or `"add"` for its Skip-Sideways version
        (fused inputs with the automatic shortcut transform).
    """
    c1, c2, c3, c4, c5 = (scaled(f, width) for f, *_ in VGG8_CONVS)
    f6, f7 = (scaled(f, width) for f in VGG8_FC)
    cin, size = (12, resolution // 2) if space_to_depth else (3, resolution)
    size = -(-size // 2) // 2          # conv1 stride 2 (same), pool 2
    size = -(-size // 2) // 2          # conv2 stride 2 (same), pool 2
    p = size // 2                      # pool5
    direct_in = [cin, c1, c2, c3, c4]  # conv input channels without shortcuts
    outs = [c1, c2, c3, c4, c5]
    kernels = [k for _, k, _, _ in VGG8_CONVS]
    shortcut = {2: c1, 3: c2, 4: c3, 5: c4, 6: c5, 7: f6}  # unit index (0-based) -> h_{i-2} channels
    direct = {2: c2, 3: c3, 4: c4, 5: c5, 6: f6, 7: f7}    # unit index -> h_{i-1} channels
    extra_in = {i: 0 for i in range(8)}
    projections = 0
    if fusion == "concat":
        extra_in.update(shortcut)
    elif fusion == "add":
        for i, s in shortcut.items():
            if s != direct[i] and direct[i] % s:
                projections += s * direct[i]
    elif fusion is not None:
        raise ValueError(f"`fusion` must be None, 'concat' or 'add'; got {fusion!r}.")
    total = sum(k * k * (ci + extra_in[i]) * co + 4 * co
                for i, (k, ci, co) in enumerate(zip(kernels, direct_in, outs, strict=True)))
    total += p * p * (c5 + extra_in[5]) * f6
    total += (f6 + extra_in[6]) * f7
    total += (f7 + extra_in[7]) * num_classes + num_classes
    return total + projections


def wide_vgg8_width(num_classes: int, fusion: str = "concat", resolution: int = 112,
                    space_to_depth: bool = False) -> float:
    """The `width` at which plain `vgg8` has as many parameters as Skip-Sideways VGG-8 with
    `fusion` (paper Table 3's "wide" Sideways model).

    Args:
      num_classes, resolution, space_to_depth: as in `vgg8_num_params`.
      fusion: `"concat"` or `"add"`.

    Returns:
      The width, to pass as `vgg8(..., width=...)`; the counts agree within 2 %.
    """
    if fusion not in ("concat", "add"):
        raise ValueError(f"`fusion` must be 'concat' or 'add'; got {fusion!r}.")
    target = vgg8_num_params(num_classes, 1.0, resolution, space_to_depth, fusion)

    return matching_width(lambda w: vgg8_num_params(num_classes, w, resolution, space_to_depth), target)


def matching_width(count: Callable[[float], int], target: int, iterations: int = 40) -> float:
    """The width >= 1 at which `count(width)` (a parameter count growing with width) is closest to `target`.

    Doubles the width until it is enough, then bisects `iterations` times.
    """
    low, high = 1.0, 2.0
    while count(high) < target:
        low, high = high, 2 * high
    for _ in range(iterations):
        mid = (low + high) / 2
        low, high = (mid, high) if count(mid) < target else (low, mid)
    return high if abs(count(high) - target) <= abs(count(low) - target) else low


def vgg16(num_classes: int, layers_per_unit: int = 2, dropout: float = 0.0, space_to_depth: bool = False,
          width: float = 1.0, hidden_bias: bool = False) -> list:
    """VGG-16 with batch norm: 13 convolutions 3x3 in 5 blocks (64, 128, 256, 512, 512 channels,
    2x2 max-pool after each), fc6 4096, fc7 4096, fc8 logits; 16 weight layers grouped into units
    of `layers_per_unit` consecutive layers (8 units by default, as in the Kinetics runs).

    Args:
      num_classes: the logits' size.
      layers_per_unit: weight layers per unit (the last unit takes what remains).
      dropout: dropout rate on fc6 and fc7.
      space_to_depth: start with a 2x2 space-to-depth of the frame.
      width: scales every hidden width.
      hidden_bias: biases on the hidden layers too.

    Returns:
      `ceil(16 / layers_per_unit)` units; frames `[B, H, W, C]` (H, W multiples of 32) ->
      logits `[B, num_classes]`.
    """
    check_classes(num_classes)
    width = check_width(width)
    dropout = check_dropout(dropout)
    if not isinstance(layers_per_unit, int) or not 1 <= layers_per_unit <= 16:
        raise ValueError(f"`layers_per_unit` must be an integer in [1, 16]; got {layers_per_unit!r}.")
    weight_layers = []
    for i, (filters, pool) in enumerate(VGG16_CONVS):
        layers = conv_bn_relu(scaled(filters, width), 3, use_bias=hidden_bias, name=f"conv{i + 1}")
        if pool:
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool{i + 1}"))
        weight_layers.append(layers)
    weight_layers.append(_fc6(scaled(VGG16_FC[0], width), dropout, hidden_bias))
    weight_layers.append(dense_relu(scaled(VGG16_FC[1], width), dropout, hidden_bias, name="fc7"))
    weight_layers.append([keras.layers.Dense(num_classes, name="fc8")])
    units = []
    for start in range(0, len(weight_layers), layers_per_unit):
        layers = stem(space_to_depth) if start == 0 else []
        for group in weight_layers[start:start + layers_per_unit]:
            layers += group
        units.append(unit(layers, f"unit{len(units) + 1}"))
    return units
