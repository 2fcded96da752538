"""A stage: one Sideways unit together with the shortcut transform it owns."""

from __future__ import annotations

from typing import Optional

import keras

from sideways_tf.core.shortcut import ShortcutTransform, fuse


class Stage(keras.layers.Layer):
    """Unit i of the pipeline: `h_i = unit_i(fuse(h_{i-1}, tau(h_{i-2})))`.

    Without a shortcut (Sideways, BP, the first two units) it is `h_i = unit_i(h_{i-1})`.
    The stage's trainable variables are theta_i: the unit's and, for a projecting tau, the
    projection's.

    Args:
      unit: the Keras layer the user gave for this position.
      fusion: `"concat"` or `"add"`; only used when `has_shortcut`.
      has_shortcut: whether the stage reads `h_{i-2}`.
      transform: tau, or None for the identity.
    """

    def __init__(
        self,
        unit: keras.layers.Layer,
        fusion: str = "concat",
        has_shortcut: bool = False,
        transform: Optional[ShortcutTransform] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.unit = unit
        self.fusion = fusion
        self.has_shortcut = has_shortcut
        self.transform = transform

    def fused_input(self, direct, shortcut=None):
        """The unit's input: `[B, *S]` direct (and shortcut) to the fused `[B, *S']`."""
        if not self.has_shortcut:
            return direct
        if self.transform is not None:
            shortcut = self.transform(shortcut)
        return fuse(direct, shortcut, self.fusion)

    def call(self, direct, shortcut=None, training=None):
        return self.unit(self.fused_input(direct, shortcut), training=training)
