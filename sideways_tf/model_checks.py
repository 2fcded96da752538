"""Checks of a `SidewaysModel`'s arguments, and of the clips and targets it is given against what it was built for.

Each raises a `ValueError` naming the argument, what it got and what is allowed, before anything
runs where the shapes allow (`input_checks` holds the checks that need no model).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import warnings
from typing import Iterator, Optional, Sequence

import keras
from keras import ops

from sideways_tf import input_checks, stream_state
from sideways_tf.core import backends, schedule
from sideways_tf.core.shortcut import FUSIONS, SHORTCUTS


def _check_choice(name: str, value, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}.")


def check_arguments(units, mode: str, fusion: str, shortcut: str, devices, update_every: Optional[int],
                    stateful: bool, stop_on_nonfinite_loss: bool, masking: bool = True) -> None:
    """`SidewaysModel`'s constructor arguments (as documented there), each named when it is not allowed."""
    _check_choice("mode", mode, schedule.MODES)
    if update_every is not None and (isinstance(update_every, bool) or not isinstance(update_every, int)
                                     or update_every < 1):
        raise ValueError(f"`update_every` must be None or a positive int (steps between updates); got "
                         f"{update_every!r}.")
    for name, value in (("stateful", stateful), ("stop_on_nonfinite_loss", stop_on_nonfinite_loss),
                        ("masking", masking)):
        if not isinstance(value, bool):
            raise ValueError(f"`{name}` must be True or False; got {value!r}.")
    _check_choice("fusion", fusion, FUSIONS)
    _check_choice("shortcut", shortcut, SHORTCUTS)
    if isinstance(units, keras.layers.Layer) or not isinstance(units, (list, tuple)):
        raise ValueError(f"`units` must be a non-empty list of keras.layers.Layer; got {type(units).__name__}.")
    if not units:
        raise ValueError("`units` must be a non-empty list of keras.layers.Layer; got an empty list.")
    for k, unit in enumerate(units):
        if not isinstance(unit, keras.layers.Layer):
            raise ValueError(f"`units[{k}]` must be a keras.layers.Layer; got {type(unit).__name__}.")
    input_checks.check_distinct_units(units)
    input_checks.check_skip_depth(mode, len(units))
    input_checks.check_no_activity_regularizers(units)
    if devices is not None and devices != "auto":
        if isinstance(devices, str) or len(devices) != len(units) or not all(isinstance(d, str) for d in devices):
            raise ValueError(f"`devices` must be None, 'auto' or a list of {len(units)} device strings (one per "
                             f"unit); got {devices!r}.")
        backends.current().placement(devices, programs=mode != "bp")  # names a device that does not exist


def _minimum(model, training: bool) -> tuple[int, str]:
    """The fewest frames a clip needs, and what for."""
    if training:
        return model.min_clip_length, "every unit to count once (2D - 1)"
    return model.inference_latency + 1, "one prediction (D)"


def check_video(model, video, training: bool) -> None:
    """A clip `[B, T, *F]` fits the model (building it on the first one) and is long enough.

    A stateful model's chunks may be short; a time axis unknown while tracing is checked at run time.
    """
    shape = tuple(video.shape)
    if model.engine is None:
        model.build(shape)
    expected = (None, None) + tuple(model.frame_shape)
    if len(shape) != len(expected) or tuple(shape[2:]) != tuple(model.frame_shape):
        raise ValueError(f"video shape {shape} does not match the shape the model was built on {expected} "
                         "([B, T, *frame_shape]).")
    minimum, what = _minimum(model, training)
    if model.stateful:
        minimum = 1  # chunks of a stream may be short (a call on one returns T' = max(T - (D - 1), 0))
    num_frames = shape[1]
    if num_frames is not None and num_frames < minimum:
        raise ValueError(f"clip too short: T={num_frames} frames, but a {model.depth}-unit model in mode "
                         f"{model.mode!r} needs at least {minimum} frames for {what}.")
    if num_frames is None and minimum > 1 and not isinstance(video, keras.KerasTensor):
        # T unknown while tracing (a tf.data pipeline with a None time axis): checked at run time.
        backends.current().assert_at_least(
            ops.shape(video)[1], minimum,
            f"clip too short: a {model.depth}-unit model in mode {model.mode} needs at least {minimum} frames "
            f"for {what}; this clip (T unknown until run time) has fewer.")


def checked_lengths(model, x, training: bool):
    """`x`, or a `tf.data` dataset whose clip length is unknown in its spec, checked batch by batch."""
    if getattr(x, "element_spec", None) is None or model.engine is None or model.stateful:
        return x
    minimum, what = _minimum(model, training)
    return input_checks.with_clip_length_check(
        x, minimum, f"clip too short: a {model.depth}-unit model in mode {model.mode!r} needs at least {minimum} "
                    f"frames for {what}; a batch of this dataset (T unknown until it is read) has fewer.")


def check_targets(model, num_frames: Optional[int], labels, sample_weight) -> None:
    """Labels and sample weights fit the clips, the predictions and the loss (`input_checks`)."""
    if labels is not None and getattr(model, "loss", None) is not None and model.engine is not None:
        input_checks.check_labels(labels, num_frames, model.prediction_shape, input_checks.is_sparse_loss(model.loss))
    if sample_weight is not None:
        input_checks.check_sample_weight(sample_weight, num_frames)


def check_compiled(model) -> None:
    """The model was compiled with a loss."""
    if getattr(model, "loss", None) is None:
        raise ValueError("call `compile(loss=...)` before training or asking for gradients.")


def frame_shape_of(model, input_shape) -> tuple:
    """`F` of a clip shape `[B, T, *F]` given to `build`, fully defined, and the model's own once built."""
    input_shape = tuple(input_shape)
    if len(input_shape) < 3:
        raise ValueError(f"videos must be [B, T, *frame_shape] (rank >= 3); got shape {input_shape}.")
    frame_shape = tuple(input_shape[2:])
    if any(d is None for d in frame_shape):
        raise ValueError(f"the frame shape must be fully defined; got video shape {input_shape}.")
    if model.engine is not None and frame_shape != model.frame_shape:
        raise ValueError(f"video shape {input_shape} does not match the shape the model was built on "
                         f"{(None, None) + model.frame_shape} ([B, T, *frame_shape]).")
    return frame_shape


@contextlib.contextmanager
def read_as_clips(input_shape) -> Iterator[None]:
    """Around building the units: a unit that fails on a rank-4 input is told how the input was read
    (a batch of images `[B, H, W, C]` is read as B clips of H frames).

    With a rank-4 input, the warnings Keras gives while the units fail to build ("looks like it
    has unbuilt state") are held back, since the error says what went wrong; they are passed on
    when the units build."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 4:
        yield
        return
    failed = None
    with warnings.catch_warnings(record=True) as held:
        warnings.simplefilter("always")
        try:
            yield
        except ValueError as error:
            failed = error
    if failed is not None:
        raise ValueError(f"{failed}\nThe input of shape {input_shape} was read as B={input_shape[0]} clips of "
                         f"T={input_shape[1]} frames of shape {input_shape[2:]}: clips are [B, T, H, W, C] (or "
                         f"[B, T, *frame_shape]). A batch of images needs a time axis (x[:, None] for one "
                         f"frame each).") from failed
    for warning in held:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def check_stages(stages: Sequence) -> None:
    """Built stages share no variable and none computes in float16."""
    input_checks.check_no_shared_variables(stages)
    float16 = [s.name for s in stages if "float16" == s.compute_dtype or "float16" == s.unit.compute_dtype]
    if float16:
        raise ValueError(f"dtype policy 'mixed_float16' is not supported (stages {float16} compute in float16): "
                         "the pipeline's gradient messages would need loss scaling. Use 'mixed_bfloat16', which "
                         "needs none.")


def fit_arguments(args: Sequence, kwargs: dict) -> dict:
    """`fit`'s positional arguments after `x, y` as keywords (Keras' order)."""
    if len(args) > len(input_checks.FIT_ARGUMENTS):
        raise TypeError(f"fit takes at most {2 + len(input_checks.FIT_ARGUMENTS)} positional arguments.")
    return {**kwargs, **dict(zip(input_checks.FIT_ARGUMENTS, args, strict=False))}


def check_fit_batches(model, x, y, kwargs: dict) -> Optional[tuple]:
    """What `fit` will train on, checked where its shape is known before the first step.

    Returns:
      None where the batches' shape is unknown (a generator), else `(batch shape [B, T, *F],
      labels (or their spec), whether batches carry sample weights)`.
    """
    spec = getattr(x, "element_spec", None)
    if spec is not None:
        input_checks.check_element_spec(spec)
        specs = tuple(spec) if isinstance(spec, (tuple, list)) else (spec,)
        video, labels, weights = (specs + (None, None))[:3]
    else:
        video, labels, weights = x, y, kwargs.get("sample_weight")
        # Keras shuffles arrays and a PyDataset's batch order; a generator's order is its own.
        if model.stateful and kwargs.get("shuffle", True) and not inspect.isgenerator(x):
            raise ValueError("`stateful=True` reads consecutive batches as consecutive chunks: pass shuffle=False.")
    if isinstance(video, dict):
        video = video.get(stream_state.VIDEO_KEY)
    shape = getattr(video, "shape", None)
    if shape is None or getattr(shape, "rank", len(shape)) is None or len(shape) < 1:
        return None
    shape = tuple(None if d is None else int(d) for d in shape)
    if spec is None and model.stateful:
        batch_size = kwargs.get("batch_size") or 32
        if shape[0] % batch_size:
            raise ValueError(f"`stateful=True` needs equal batches: {shape[0]} clips do not split into batches of "
                             f"batch_size={batch_size}.")
        shape = (batch_size,) + shape[1:]
    if shape[0] == 0:
        raise ValueError(f"fit got no clips: `x` has shape {shape} (0 examples).")
    check_video(model, keras.KerasTensor(shape), training=True)
    check_targets(model, shape[1], labels, weights)
    return shape, labels, weights is not None


def peek_stream(model, x) -> tuple:
    """A stateful model's `fit` on a Python generator: its first batch, read to make the stream state.

    Returns:
      `(a generator of every batch of x, the first one put back, (its batch shape [B, T, *F], its labels,
      whether it carries sample weights))`; `(x, None)` where `x` is no generator or yields nothing.
    """
    if not inspect.isgenerator(x):
        return x, None
    first = next(x, None)
    if first is None:
        return x, None
    video, labels, weights = keras.utils.unpack_x_y_sample_weight(first)
    video = stream_state.video_and_restarts(video)[0]
    check_video(model, video, training=True)
    check_targets(model, video.shape[1], labels, weights)
    return (batch for batch in itertools.chain([first], x)), (tuple(video.shape), labels, weights is not None)


def check_inference_input(model, x, kwargs: dict, y=None, labelled: bool = False):
    """`evaluate`'s and `predict`'s clips (and, `labelled`, labels) checked where their shape is known
    before Keras wraps errors; returns `x` (`checked_lengths`)."""
    shape = input_checks.video_shape(x, kwargs)
    if shape is not None:
        check_video(model, keras.KerasTensor(shape), training=False)
        if labelled and getattr(x, "element_spec", None) is None:
            check_targets(model, shape[1], y, kwargs.get("sample_weight"))
    return checked_lengths(model, x, training=False)


def check_save_path(filepath) -> None:
    """Refuses the legacy HDF5 format for a whole model, naming the formats that work.

    Raises:
      ValueError: `filepath` ends in `.h5` or `.hdf5`.
    """
    if str(filepath).endswith((".h5", ".hdf5")):
        raise ValueError(f"model.save({str(filepath)!r}): the legacy HDF5 format cannot store a SidewaysModel "
                         f"(its units and rule). Save to '.keras' (model.save('model.keras')), or the weights "
                         f"alone with model.save_weights('model.weights.h5').")


@contextlib.contextmanager
def weights_file(model, filepath) -> Iterator[None]:
    """Around `load_weights`: an unreadable file raises `OSError` naming it (as Keras does; a backup's
    restore then falls back to its previous copy), weights of another model a one-line `ValueError`."""
    try:
        yield
    except OSError as error:
        raise OSError(f"{filepath} is not a readable Keras weights file: {error}") from error
    except ValueError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"the weights in {filepath} do not fit this model (mode={model.mode!r}, "
                         f"fusion={model.fusion!r}, shortcut={model.shortcut!r}, {len(model.frame_units)} units): "
                         f"{first} Weights load only into a model of the same units and shortcuts.") from error


def summary_header(model) -> list[str]:
    """The lines `summary` prints before Keras' table: the rule (mode, D, fusion and tau in the skip
    modes, the streaming options) and, once built, which unit each stage holds."""
    options = [f"mode={model.mode!r}", f"D={model.depth} units"]
    if model.mode in schedule.SKIP_MODES:
        options += [f"fusion={model.fusion!r}", f"shortcut={model.shortcut!r}"]
    if model.update_every is not None:
        options.append(f"update_every={model.update_every}")
    if model.stateful:
        options.append("stateful")
    lines = [f"SidewaysModel {model.name!r}: " + ", ".join(options) + "."]
    if model.stages:
        lines.append("Units: " + ", ".join(f"{stage.name} = {stage.unit.name}" for stage in model.stages) + ".")
    return lines
