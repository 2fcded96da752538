"""Space-to-depth and space-time-to-depth rearrangements and their inverses.

The papers use a 2x2 space-to-depth on every frame (TPU-friendly: fewer, larger
convolutions) and, for the 3D baselines, space-time-to-depth.
"""

from __future__ import annotations

import keras
from keras import ops


def _check_positive(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return value


def space_time_to_depth(x, time_block: int, space_block: int):
    """Moves `t x s x s` blocks into channels: `[B, T, H, W, C]` -> `[B, T/t, H/s, W/s, t*s*s*C]`.

    The channel order is `(dt, dy, dx, c)`; with `t = 1` it equals `tf.nn.space_to_depth` per frame.
    """
    _, t, h, w, c = x.shape
    x = ops.reshape(x, (-1, t // time_block, time_block, h // space_block, space_block,
                        w // space_block, space_block, c))
    x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))
    return ops.reshape(x, (-1, t // time_block, h // space_block, w // space_block,
                           time_block * space_block * space_block * c))


def depth_to_space_time(x, time_block: int, space_block: int):
    """The inverse of `space_time_to_depth`: `[B, T, H, W, t*s*s*C]` -> `[B, T*t, H*s, W*s, C]`."""
    _, t, h, w, c = x.shape
    out_c = c // (time_block * space_block * space_block)
    x = ops.reshape(x, (-1, t, h, w, time_block, space_block, space_block, out_c))
    x = ops.transpose(x, (0, 1, 4, 2, 5, 3, 6, 7))
    return ops.reshape(x, (-1, t * time_block, h * space_block, w * space_block, out_c))


class _Rearrange(keras.layers.Layer):
    def _check_divisible(self, shape, axes_and_blocks):
        for axis, block in axes_and_blocks:
            if shape[axis] is not None and shape[axis] % block:
                raise ValueError(
                    f"{type(self).__name__}: axis {axis} of input shape {tuple(shape)} is not a multiple of {block}."
                )


class _SpaceBlocks(_Rearrange):
    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = _check_positive("block_size", block_size)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="sideways_tf")
class SpaceToDepth(_SpaceBlocks):
    """`[B, H, W, C]` -> `[B, H/b, W/b, b*b*C]` (as `tf.nn.space_to_depth`).

    Args:
      block_size: b.
    """

    def call(self, x):
        self._check_divisible(x.shape, [(1, self.block_size), (2, self.block_size)])
        return space_time_to_depth(ops.expand_dims(x, 1), 1, self.block_size)[:, 0]

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        s = self.block_size
        return (b, h // s, w // s, c * s * s)


@keras.saving.register_keras_serializable(package="sideways_tf")
class DepthToSpace(_SpaceBlocks):
    """`[B, H, W, b*b*C]` -> `[B, H*b, W*b, C]`, the inverse of `SpaceToDepth`.

    Args:
      block_size: b.
    """

    def call(self, x):
        self._check_divisible(x.shape, [(3, self.block_size**2)])
        return depth_to_space_time(ops.expand_dims(x, 1), 1, self.block_size)[:, 0]

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        s = self.block_size
        return (b, h * s, w * s, c // (s * s))


class _SpaceTimeBlocks(_Rearrange):
    def __init__(self, time_block: int = 2, space_block: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.time_block = _check_positive("time_block", time_block)
        self.space_block = _check_positive("space_block", space_block)

    def get_config(self):
        return {**super().get_config(), "time_block": self.time_block, "space_block": self.space_block}


@keras.saving.register_keras_serializable(package="sideways_tf")
class SpaceTimeToDepth(_SpaceTimeBlocks):
    """`[B, T, H, W, C]` -> `[B, T/t, H/s, W/s, t*s*s*C]`.

    Args:
      time_block: t.
      space_block: s.
    """

    def call(self, x):
        self._check_divisible(x.shape, [(1, self.time_block), (2, self.space_block), (3, self.space_block)])
        return space_time_to_depth(x, self.time_block, self.space_block)

    def compute_output_shape(self, input_shape):
        b, t, h, w, c = input_shape
        tb, s = self.time_block, self.space_block
        return (b, None if t is None else t // tb, h // s, w // s, c * tb * s * s)


@keras.saving.register_keras_serializable(package="sideways_tf")
class DepthToSpaceTime(_SpaceTimeBlocks):
    """`[B, T, H, W, t*s*s*C]` -> `[B, T*t, H*s, W*s, C]`, the inverse of `SpaceTimeToDepth`.

    Args:
      time_block: t.
      space_block: s.
    """

    def call(self, x):
        self._check_divisible(x.shape, [(4, self.time_block * self.space_block**2)])
        return depth_to_space_time(x, self.time_block, self.space_block)

    def compute_output_shape(self, input_shape):
        b, t, h, w, c = input_shape
        tb, s = self.time_block, self.space_block
        return (b, None if t is None else t * tb, h * s, w * s, c // (tb * s * s))
