"""Building blocks shared by the model zoo. Each returns a list of Keras layers."""

from __future__ import annotations

from typing import Optional

import keras

from sideways_tf.layers import SpaceToDepth


def conv_bn_relu(filters: int, kernel: int, strides: int = 1, use_bias: bool = False,
                 batch_norm: bool = True, name: Optional[str] = None) -> list:
    """Conv2D -> BatchNormalization -> ReLU (batch norm between the convolution and its ReLU)."""
    layers = [keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=use_bias,
                                  name=None if name is None else f"{name}_conv")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(name=None if name is None else f"{name}_bn"))
    layers.append(keras.layers.ReLU(name=None if name is None else f"{name}_relu"))
    return layers


def dense_relu(units: int, dropout: float = 0.0, use_bias: bool = False, name: Optional[str] = None) -> list:
    """Dense -> ReLU (-> Dropout)."""
    layers = [keras.layers.Dense(units, use_bias=use_bias, name=name),
              keras.layers.ReLU(name=None if name is None else f"{name}_relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name=None if name is None else f"{name}_dropout"))
    return layers


def unit(layers: list, name: str) -> keras.Sequential:
    """One Sideways unit: the layers in order, as a Sequential built on first use."""
    return keras.Sequential(layers, name=name)


def stem(space_to_depth: bool) -> list:
    """The layers a first unit starts with: a 2x2 space-to-depth when asked for."""
    return [SpaceToDepth(2, name="space_to_depth")] if space_to_depth else []


def scaled(channels: int, width: float) -> int:
    """A hidden width scaled by `width`, at least 1."""
    return max(1, int(round(channels * width)))


def check_classes(num_classes) -> int:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer; got {num_classes!r}.")
    return num_classes


def check_width(width) -> float:
    if not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"`width` must be a positive number; got {width!r}.")
    return float(width)


def check_dropout(dropout) -> float:
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}.")
    return float(dropout)
