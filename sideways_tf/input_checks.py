"""Checks of what a user feeds a `SidewaysModel`, made before anything runs where the shapes allow.

Each check raises a `ValueError` naming the argument, its shape or value, and what is allowed,
instead of letting a shape error surface from inside the compiled frame loop.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Optional, Sequence

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
        numbers = _numbers(labels)
        if numbers is not None and numbers.size and not np.issubdtype(numbers.dtype, np.integer):
            fractional = numbers[np.isfinite(numbers) & (numbers != np.round(numbers))]
            if fractional.size or not np.isfinite(numbers).all():
                example = fractional.flat[0] if fractional.size else numbers[~np.isfinite(numbers)].flat[0]
                raise ValueError(f"labels must be integer class ids for a class-id loss (sparse cross-entropy); got "
                                 f"{numbers.dtype} values that are not whole numbers, such as {example} (they would "
                                 f"be truncated). Pass one-hot labels with CategoricalCrossentropy for soft targets.")
            values = numbers.astype(np.int64)
        else:
            values = numbers
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


def _numbers(x) -> Optional[np.ndarray]:
    """The values of a NumPy array or eager tensor of numbers, else None (symbolic)."""
    if isinstance(x, np.ndarray):
        values = x
    elif hasattr(x, "numpy") and callable(x.numpy) and not isinstance(x, keras.KerasTensor):
        try:
            values = np.asarray(x.numpy())
        except (AttributeError, TypeError, ValueError, NotImplementedError):
            return None
    else:
        return None
    return values if np.issubdtype(values.dtype, np.number) else None


def check_distinct_units(units: Sequence) -> None:
    """Each unit object may appear once in `units` (a unit listed twice would be trained from two
    pipeline positions at once, on different frames). Layers shared inside units are caught at
    build, by their variables (`check_no_shared_variables`).

    Raises:
      ValueError: naming the two positions that hold the same unit.
    """
    first: dict = {}
    for k, unit in enumerate(units):
        j = first.setdefault(id(unit), k)
        if j != k:
            raise ValueError(f"units[{j}] and units[{k}] are the same layer object ({unit.name!r}): each unit needs "
                             f"its own layer and weights (a shared one would be trained from two pipeline positions "
                             f"at once, on different frames). Build a new layer for each unit; tied weights are not "
                             f"supported.")


def check_no_shared_variables(stages: Sequence) -> None:
    """No variable may belong to two stages (a layer reused inside two units' own code).

    Raises:
      ValueError: naming the units and the variable.
    """
    owner: dict = {}
    for k, stage in enumerate(stages):
        for v in stage.trainable_variables + stage.non_trainable_variables:
            first = owner.setdefault(id(v), k)
            if first != k:
                raise ValueError(f"units[{first}] and units[{k}] share the variable {v.path!r}: each unit needs its "
                                 f"own weights; tied weights are not supported.")


def video_shape(x, kwargs: dict) -> Optional[tuple]:
    """The clips' shape `[B, T, *F]` from what `fit`/`evaluate`/`predict` got (arrays or a `tf.data` spec), if known."""
    from sideways_tf import stream_state

    spec = getattr(x, "element_spec", None)
    video = x
    if spec is not None:
        specs = tuple(spec) if isinstance(spec, (tuple, list)) else (spec,)
        video = specs[0]
    if isinstance(video, dict):
        video = video.get(stream_state.VIDEO_KEY)
    shape = getattr(video, "shape", None)
    if shape is None or getattr(shape, "rank", len(shape)) is None or len(shape) < 1:
        return None
    return tuple(None if d is None else int(d) for d in shape)


def finite_video(video, check):
    """The float `video` through `check(x, message)` (`backends.current().check_finite`); integer clips as they are."""
    if "float" not in str(video.dtype):
        return video
    return check(video, "check_finite: the input video holds NaN or Inf values.")


NONFINITE_LOSS = ("stop_on_nonfinite_loss: the training loss became NaN or Inf, so this step was not applied and "
                  "the weights are those of the last step with a finite loss. Lower the learning rate, look for "
                  "NaN or Inf in the inputs (check_finite=True names them), or pass stop_on_nonfinite_loss=False "
                  "to train on regardless.")


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


FIT_ARGUMENTS = ("batch_size", "epochs", "verbose", "callbacks", "validation_split", "validation_data", "shuffle",
                 "class_weight", "sample_weight", "initial_epoch", "steps_per_epoch", "validation_steps",
                 "validation_batch_size", "validation_freq")
"""Keras' `fit` arguments after `x` and `y`, in order (to read them when given by position)."""


class BatchCounter(keras.callbacks.Callback):
    """Counts the training batches a `fit` ran (to refuse a `fit` that trained on nothing)."""

    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def check_trained(counter: BatchCounter, epochs: int, initial_epoch: int) -> None:
    """A `fit` that ran epochs must have trained on at least one batch.

    Raises:
      ValueError: saying that the data gave no batch, and the usual causes.
    """
    if epochs > initial_epoch and counter.batches == 0:
        raise ValueError("fit trained on nothing: the data gave no batch in any epoch (an empty dataset, "
                         "num_examples <= 0, or a batch size larger than the examples with drop_remainder=True). "
                         "The weights are unchanged.")


_OUR_MESSAGE = re.compile(r"((?:clip too short|video shape \(.*?\) does not match the shape)[^\n\x1b\]]*)")


@contextlib.contextmanager
def first_line_ours() -> Iterator[None]:
    """Our input errors raised inside a compiled step (a run-time check, or a check inside Keras'
    `call` wrapper) come out as a `ValueError` whose first line is ours, not the framework's
    "Graph execution error" or "Exception encountered when calling"."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - re-raised unless it carries one of our messages
        found = _OUR_MESSAGE.search(str(error))
        if found is None or str(error).startswith(found.group(1)):
            raise
        raise ValueError(found.group(1).strip().replace("\\'", "'")) from error


def with_clip_length_check(dataset, minimum: int, message: str):
    """`dataset` with each batch's clip length checked in the input pipeline, where it is unknown in the spec.

    The check runs in tf.data, before the step (and under JAX before Keras detaches the model's
    variables): a short clip fails with `message` when its batch is read.

    Args:
      dataset: a `tf.data.Dataset` of `video`, `(video, ...)` or `({"video": ..., ...}, ...)`.
      minimum: the least T allowed.
      message: the error's text.
    """
    import tensorflow as tf

    from sideways_tf import stream_state

    if minimum <= 1:
        return dataset

    def video_of(element):
        first = element[0] if isinstance(element, tuple) else element
        return first[stream_state.VIDEO_KEY] if isinstance(first, dict) else first

    spec = video_of(dataset.element_spec)
    if getattr(spec, "shape", None) is None or spec.shape.rank is None or spec.shape.rank < 2 or \
            spec.shape[1] is not None:
        return dataset

    def check(*element):
        element = element if len(element) > 1 else element[0]
        with tf.control_dependencies([tf.debugging.assert_greater_equal(
                tf.shape(video_of(element))[1], minimum, message=message)]):
            return tf.nest.map_structure(tf.identity, element)

    return dataset.map(check)
