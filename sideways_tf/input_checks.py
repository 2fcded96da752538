"""Checks of what a user feeds a `SidewaysModel`, made before anything runs where the shapes allow.

Each check raises a `ValueError` naming the argument, its shape or value, and what is allowed,
instead of letting a shape error surface from inside the compiled frame loop.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import keras
import numpy as np

from sideways_tf.core import schedule

SPARSE_LOSS_NAMES = ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy")


def is_sparse_loss(loss: Any) -> bool:
    """Whether `loss` (what `compile` got) takes class ids rather than targets shaped like the predictions."""
    if isinstance(loss, keras.losses.SparseCategoricalCrossentropy):
        return True
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)
    return name in SPARSE_LOSS_NAMES


def _static(shape) -> Optional[tuple]:
    if shape is None:
        return None
    rank = getattr(shape, "rank", len(shape))
    return None if rank is None else tuple(None if d is None else int(d) for d in shape)


def _agree(a: Sequence, b: Sequence) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def check_labels(labels: Any, num_frames: Optional[int], prediction_shape: Sequence[int], sparse: bool) -> None:
    """Labels must be per clip or per frame, shaped for the loss, and (class ids) in range.

    Args:
      labels: an array, tensor or `KerasTensor`/`TensorSpec` (anything with `shape`; values are
        checked only for concrete NumPy or eager arrays).
      num_frames: T of the clips (None when unknown).
      prediction_shape: `O`, one frame's prediction without the batch axis.
      sparse: the loss takes class ids (`SparseCategoricalCrossentropy`).

    Raises:
      ValueError: naming `labels`, their shape or values, and the allowed layouts.
    """
    shape = _static(getattr(labels, "shape", None))
    if shape is None or len(shape) == 0:
        return
    frames = "T" if num_frames is None else f"T={num_frames}"
    prediction = tuple(prediction_shape)
    if sparse:
        classes = prediction[-1] if prediction else None
        ids = prediction[:-1]  # one class id per prediction vector
        allowed = [(None, *ids), (None, *ids, 1), (None, num_frames, *ids), (None, num_frames, *ids, 1)]
        if not any(_agree(shape, a) for a in allowed):
            raise ValueError(
                f"labels of shape {shape} do not fit a class-id loss on predictions {prediction}: expected "
                f"{_layout(ids)} (class ids per clip) or {_layout(ids, True)} (per frame), {frames} the video's "
                f"frame count.")
        values = _concrete(labels)
        if values is not None and values.size and classes is not None:
            low, high = values.min(), values.max()
            if low < 0 or high >= classes:
                raise ValueError(f"labels must be class ids in [0, {classes}) for the model's {classes} outputs; got "
                                 f"values from {low} to {high}.")
        return
    per_clip, per_frame = (None, *prediction), (None, num_frames, *prediction)
    if not (_agree(shape, per_clip) or _agree(shape, per_frame)):
        raise ValueError(
            f"labels of shape {shape} do not fit predictions of shape {prediction}: expected {_layout(prediction)} "
            f"(one target per clip) or {_layout(prediction, True)} (one per frame), {frames} the video's frame count.")


def _layout(dims: Sequence, per_frame: bool = False) -> str:
    """`[B, 3]`, or `[B, T, 3]` per frame."""
    return "[" + ", ".join(["B", *(["T"] if per_frame else []), *(str(d) for d in dims)]) + "]"


def check_sample_weight(sample_weight: Any, num_frames: Optional[int]) -> None:
    """`sample_weight` must be `[B]` (per clip) or `[B, T]` (per frame)."""
    shape = _static(getattr(sample_weight, "shape", None))
    if shape is None:
        return
    if not any(_agree(shape, a) for a in [(None,), (None, num_frames)]):
        frames = "T" if num_frames is None else f"T={num_frames}"
        raise ValueError(f"sample_weight of shape {shape}: expected [B] (one weight per clip) or [B, {frames}] (one "
                         f"per frame).")


def check_element_spec(spec: Any) -> None:
    """A `tf.data` dataset for `fit` yields `(video, labels[, sample_weight])`, not dicts of features."""
    if isinstance(spec, dict):
        keys = sorted(spec)
        hint = ""
        if "video" in spec and "label" in spec:
            hint = ' Map it first: dataset.map(lambda e: (e["video"], e["label"])).'
        raise ValueError(f"the dataset yields dicts with keys {keys}; SidewaysModel.fit expects (video, labels) "
                         f"pairs (optionally with a sample_weight).{hint} `sw.data.load` yields such pairs.")


def check_skip_depth(mode: str, depth: int) -> None:
    """The skip modes need a unit i-2 to send a shortcut to unit i: D >= 3."""
    if mode in schedule.SKIP_MODES and depth < 3:
        raise ValueError(f"mode={mode!r} adds shortcuts from unit i-2 into unit i, which needs at least 3 units; "
                         f"with {depth} there is none and it would train as mode='sideways'. Use that, or more units.")


def _concrete(x) -> Optional[np.ndarray]:
    """Integer values of a NumPy array or eager tensor, else None (symbolic, or not integers)."""
    if isinstance(x, np.ndarray):
        values = x
    elif hasattr(x, "numpy") and callable(x.numpy) and not isinstance(x, keras.KerasTensor):
        try:
            values = np.asarray(x.numpy())
        except (AttributeError, TypeError, ValueError, NotImplementedError):
            return None
    else:
        return None
    return values if np.issubdtype(values.dtype, np.integer) else None


def finite_video(video, check):
    """The float `video` through `check(x, message)` (`backends.current().check_finite`); integer clips as they are."""
    if "float" not in str(video.dtype):
        return video
    return check(video, "check_finite: the input video holds NaN or Inf values.")


def finite_gradients(gradients: Sequence, variables: Sequence, stages: Sequence, check) -> list:
    """Every gradient through `check`, with a message naming its unit and variable."""
    owner = {id(v): k for k, stage in enumerate(stages) for v in stage.trainable_variables}
    checked = []
    for gradient, variable in zip(gradients, variables, strict=True):
        k = owner.get(id(variable))
        unit = f"units[{k}] ({stages[k].unit.name})" if k is not None else "the model"
        checked.append(check(gradient, f"check_finite: the pseudo-gradient of {unit} for {variable.path} holds NaN "
                                        f"or Inf values (the input video was finite)."))
    return checked


def check_no_activity_regularizers(units: Sequence) -> None:
    """Activity regularizers inside units are refused: their loss would be counted at every step."""
    def visit(layer, where):
        if getattr(layer, "activity_regularizer", None) is not None:
            raise ValueError(f"{where} ({layer.name}) has an activity regularizer, which SidewaysModel does not "
                             "support (its loss would enter every computation step); use a weight regularizer "
                             "(kernel_regularizer=...), added once per clip.")
        for k, inner in enumerate(getattr(layer, "layers", None) or []):
            visit(inner, f"{where}.layers[{k}]")

    for k, unit in enumerate(units):
        visit(unit, f"units[{k}]")
