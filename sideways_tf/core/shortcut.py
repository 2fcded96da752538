"""The shortcut transform tau and the fusion of a unit's direct and shortcut inputs.

tau maps `h_{i-2}` (the shortcut) onto the shape the receiving unit i needs next to
`h_{i-1}` (the direct input): spatial size by pooling, channels (for `"add"` fusion only)
by tiling or a 1x1 projection owned by the receiving unit.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
from keras import ops

FUSIONS = ("concat", "add")
SHORTCUTS = ("auto", "maxpool", "avgpool", "tile", "project")


def fuse(direct: "keras.KerasTensor", shortcut, fusion: str):
    """Merges a unit's two inputs.

    Args:
      direct: `h_{i-1}`, `[B, *S]`.
      shortcut: `tau(h_{i-2})`, `[B, *S']` with `S'` equal to `S` up to the channel axis.
      fusion: `"concat"` (direct part first, on the last axis) or `"add"`.

    Returns:
      The fused input, `[B, *S[:-1], C + C']` for concat, `[B, *S]` for add.
    """
    if fusion == "concat":
        return ops.concatenate([direct, shortcut], axis=-1)
    return direct + shortcut


class ShortcutTransform(keras.layers.Layer):
    """tau: pools a shortcut activation to the direct input's size, then matches channels.

    Input `[B, H, W, C]` or `[B, C]`; output `[B, H', W', C']` or `[B, C']`.

    Args:
      pool: `None`, `"max"` or `"avg"`.
      pool_size: the pool's window `(kh, kw)`, or `"global"` to pool all spatial positions
        (shortcut of rank 4 into a direct input of rank 2).
      strides: the pool's strides (None: the window's, a non-overlapping pool).
      padding: `"valid"`, or `"same"` when a size is not a multiple of the target's (the last
        window is then partial: 14 -> 3 with stride 5).
      channels: `None`, `"tile"` or `"project"`.
      out_channels: the channel count to reach when `channels` is set.
    """

    def __init__(
        self,
        pool: Optional[str] = None,
        pool_size=None,
        channels: Optional[str] = None,
        out_channels: Optional[int] = None,
        padding: str = "valid",
        strides=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.padding = padding
        self.pool = pool
        self.pool_size = tuple(pool_size) if isinstance(pool_size, (list, tuple)) else pool_size
        self.strides = tuple(strides) if isinstance(strides, (list, tuple)) else self.pool_size
        self.channels = channels
        self.out_channels = out_channels
        self.projection = None
        if channels == "project":
            self.projection = keras.layers.Dense(out_channels, use_bias=False, name="project")

    def build(self, input_shape):
        if self.projection is not None:
            pooled = self.compute_output_shape(input_shape, before_channels=True)
            self.projection.build(pooled)
        self.built = True

    def call(self, x):
        if self.pool_size == "global":
            axes = tuple(range(1, len(x.shape) - 1))
            x = ops.max(x, axis=axes) if self.pool == "max" else ops.mean(x, axis=axes)
        elif self.pool is not None:
            pool_layer = ops.max_pool if self.pool == "max" else ops.average_pool
            x = pool_layer(x, self.pool_size, strides=self.strides, padding=self.padding)
        if self.channels == "tile":
            x = ops.tile(x, [1] * (len(x.shape) - 1) + [self.out_channels // x.shape[-1]])
        elif self.channels == "project":
            x = self.projection(x)
        return x

    def compute_output_shape(self, input_shape, before_channels: bool = False):
        shape = list(input_shape)
        if self.pool_size == "global":
            shape = [shape[0], shape[-1]]
        elif self.pool is not None:
            sizes = [-(-d // s) if self.padding == "same" else (d - k) // s + 1
                     for d, k, s in zip(shape[1:-1], self.pool_size, self.strides, strict=True)]
            shape = [shape[0]] + sizes + [shape[-1]]
        if self.channels is not None and not before_channels:
            shape[-1] = self.out_channels
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            pool=self.pool,
            pool_size=self.pool_size,
            strides=self.strides,
            channels=self.channels,
            out_channels=self.out_channels,
            padding=self.padding,
        )
        return config


def pool_windows(shortcut_sizes: Sequence[int], direct_sizes: Sequence[int]
                 ) -> Optional[tuple[list[int], list[int], str]]:
    """The window, strides and padding of a pool taking each shortcut size S to the direct input's D.

    A non-overlapping pool that keeps a last, partial window (`"same"`: 14 -> 3 with stride 5) is
    tried first; else a `"valid"` pool with stride `S // D` whose window is that stride or, where
    the network shrank the size by more (a valid convolution: 55 -> 53, or one with stride 2:
    26 -> 11), `S - D * stride + 1` (55 -> 53: a 3-wide window, stride 1; 26 -> 11: 5-wide,
    stride 2). After a network's own zero padding (MobileNetV2's 17 -> 8) the valid pool drops
    the odd row, which is that padding. Exact multiples are non-overlapping `"valid"` pools.

    Args:
      shortcut_sizes: the spatial sizes of `h_{i-2}`, `[H, W]`.
      direct_sizes: those of `h_{i-1}`.

    Returns:
      `(window, strides, padding)`, or None when a shortcut size is below the direct input's.
    """
    pairs = list(zip(shortcut_sizes, direct_sizes, strict=True))
    if any(d <= 0 or s < d for s, d in pairs):
        return None
    kept = [-(-s // d) for s, d in pairs]
    if all(-(-s // f) == d for (s, d), f in zip(pairs, kept, strict=True)):
        return kept, kept, "same" if any(s % d for s, d in pairs) else "valid"
    strides = [s // d for s, d in pairs]
    return [max(f, s - d * f + 1) for (s, d), f in zip(pairs, strides, strict=True)], strides, "valid"


def make_shortcut(
    shortcut_shape: Sequence[int],
    direct_shape: Sequence[int],
    fusion: str,
    shortcut: str = "auto",
    name: Optional[str] = None,
) -> Optional[ShortcutTransform]:
    """Chooses tau for one receiving unit from the two activation shapes.

    Args:
      shortcut_shape: shape of `h_{i-2}` without the batch axis, `[H, W, C]` or `[C]`.
      direct_shape: shape of `h_{i-1}` without the batch axis.
      fusion: `"concat"` or `"add"`.
      shortcut: `"auto"` (identity when shapes match, a max-pool down to the direct input's
        spatial size where it is smaller (`pool_windows`), global max-pool into a
        rank-2 direct input; for `"add"` channels tiled when they divide, else projected),
        `"maxpool"`/`"avgpool"` (that pool kind), `"tile"`/`"project"` (that channel matcher).
      name: the layer name.

    Returns:
      A `ShortcutTransform`, or None when tau is the identity.

    Raises:
      ValueError: when the shapes cannot be matched with the requested transform.
    """
    s_shape, d_shape = tuple(shortcut_shape), tuple(direct_shape)
    where = f"shortcut={shortcut!r}: cannot map a shortcut of shape {s_shape} onto a direct input of shape {d_shape}"
    pool = "avg" if shortcut == "avgpool" else "max"
    padding = "valid"
    if len(s_shape) == len(d_shape):
        windows = pool_windows(s_shape[:-1], d_shape[:-1])
        if windows is None:
            raise ValueError(f"{where}: each spatial size must be at least the direct input's (tau pools, it "
                             "never enlarges).")
        window, strides, padding = windows
        pool_size = tuple(window) if any(k != 1 for k in window) else None
    elif len(d_shape) == 1 and len(s_shape) >= 2:
        pool_size = "global"
    else:
        raise ValueError(f"{where}: ranks {len(s_shape) + 1} and {len(d_shape) + 1} are not supported.")
    channels, out_channels = None, None
    c_s, c_d = s_shape[-1], d_shape[-1]
    if fusion == "add" and c_s != c_d:
        if shortcut == "project" or (shortcut != "tile" and c_d % c_s):
            channels = "project"
        elif c_d % c_s == 0:
            channels = "tile"
        else:
            raise ValueError(
                f"{where}: 'tile' needs the direct channels ({c_d}) to be a multiple of the shortcut's ({c_s})."
            )
        out_channels = c_d
    elif shortcut == "project":
        channels, out_channels = "project", c_d
    if pool_size is None and channels is None:
        return None
    return ShortcutTransform(
        pool=pool if pool_size is not None else None,
        pool_size=pool_size,
        strides=tuple(strides) if isinstance(pool_size, tuple) else None,
        channels=channels,
        out_channels=out_channels,
        padding=padding,
        name=name,
    )
