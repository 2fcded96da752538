"""A stage: one Sideways unit together with the shortcut transform it owns; the D stages built from units."""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Callable, ContextManager, Optional, Sequence

import keras

from sideways_tf.core import schedule
from sideways_tf.core.shortcut import ShortcutTransform, fuse, make_shortcut


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


def build_stages(
    units: Sequence[keras.layers.Layer],
    frame_shape: Sequence[int],
    mode: str,
    fusion: str,
    shortcut: str,
    scope: Optional[Callable[[int], ContextManager]] = None,
) -> tuple[list[Stage], list[tuple], tuple]:
    """Wraps every unit in its stage (with tau in the skip modes) and builds it on its input.

    Unit k >= 2 in the skip modes is built on its fused input.

    Args:
      units: the D units.
      frame_shape: `F`, one frame's shape without the batch axis.
      mode, fusion, shortcut: as in `SidewaysModel`.
      scope: `scope(k)`, the context unit k's variables are made in (`Placement.creating`).

    Returns:
      `(stages, activation_shapes, prediction_shape)`: the shapes `S_k` of units 0..D-2 and
      `O` of the top unit, without the batch axis.

    Raises:
      ValueError: when a unit's output shape is not fully defined, or tau cannot match shapes.
    """
    skip = mode in schedule.SKIP_MODES
    hidden, stages = [], []
    for k, unit in enumerate(units):
        direct = keras.KerasTensor((None,) + tuple(frame_shape)) if k == 0 else hidden[k - 1]
        has_shortcut = skip and k >= 2
        transform = None
        if has_shortcut:
            transform = make_shortcut(hidden[k - 2].shape[1:], direct.shape[1:], fusion, shortcut, name=f"tau_{k}")
        stage = Stage(unit, fusion, has_shortcut, transform, name=f"stage_{k}")
        try:
            # Keras warns of a half-built layer before a failing call raises: kept only if the call succeeds.
            with warnings.catch_warnings(record=True) as caught:
                with scope(k) if scope is not None else contextlib.nullcontext():
                    out = stage(direct, hidden[k - 2] if has_shortcut else None)
            for warning in caught:  # each shown once per process, as where Keras raised it
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno,
                                       registry=_WARNED)
        except (ValueError, TypeError) as error:
            given = _input_description(direct, has_shortcut, transform, hidden, k, fusion)
            detail = _innermost(re.sub(r"\x1b\[[0-9;]*m", "", str(error)))
            hint = ""
            if "zero or negative" in detail:
                hint = f" (too many strides or pools for frames of shape {tuple(frame_shape)}?)"
            elif has_shortcut and fusion == "concat":
                hint = (" A unit whose input shape is fixed (one cut from an existing model by sw.split, say) takes "
                        "the shortcut with fusion='add', which keeps the input's shape.")
            raise ValueError(f"units[{k}] ({unit.name}) cannot take its input {given}: {detail}{hint}") from error
        if any(d is None or d == 0 for d in out.shape[1:]):
            raise ValueError(f"units[{k}] ({unit.name}) must produce a fully defined, non-empty shape; got {out.shape} "
                             f"from frames of shape {tuple(frame_shape)} (too many strides or pools for this "
                             f"resolution?).")
        hidden.append(out)
        stages.append(stage)
    return stages, [tuple(h.shape[1:]) for h in hidden[:-1]], tuple(hidden[-1].shape[1:])


_WARNED: dict = {}  # the registry of the warnings `build_stages` passes on


def _innermost(message: str) -> str:
    """The innermost layer's own words from Keras' nested "Exception encountered when calling X.call()"
    message, as `"X: words"`; the message as it is when it is not nested."""
    found = re.findall(r"Exception encountered when calling (\w+)\.call\(\)\.\s*(.*?)(?=\s*Arguments received by|"
                       r"\s*Exception encountered when calling|\Z)", message, flags=re.DOTALL)
    own = [(layer, words.strip()) for layer, words in found if words.strip()
           and not words.strip().startswith("Could not automatically infer")]
    return f"{own[-1][0]}: {own[-1][1]}" if own else message


def _input_description(direct, has_shortcut: bool, transform, hidden, k: int, fusion: str) -> str:
    """What unit k was given: its direct input's shape, and how a shortcut widened it."""
    if not has_shortcut:
        return f"of shape {tuple(direct.shape)}"
    shortcut = hidden[k - 2].shape if transform is None else transform.compute_output_shape(hidden[k - 2].shape)
    fused = "concatenated on the channel axis" if fusion == "concat" else "added"
    return (f"of shape {tuple(direct.shape)} (from units[{k - 1}]) with the shortcut from units[{k - 2}] "
            f"(tau gives {tuple(shortcut)}) {fused}, fusion={fusion!r}")
