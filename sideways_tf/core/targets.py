"""Aligning labels with the pipeline's outputs: per-clip labels `[B, ...]` or per-frame `[B, T, ...]`."""

from __future__ import annotations

from typing import Optional, Sequence

from keras import ops


def is_per_frame(label_shape: Sequence, output_shape: Sequence, num_frames, integer: bool = False) -> bool:
    """Whether labels of `label_shape` are per frame rather than per clip.

    Per-clip labels are `[B]` (sparse) or `[B, *O]` (dense, shaped like one prediction
    `[B, *O]`); per-frame labels are `[B, T]` + the same. A label of the prediction's rank whose
    second axis has length T is per frame, unless it also has exactly the prediction's shape
    (`[B, C]` with `C == T`): then integer labels are read as sparse per-frame labels and
    float labels as one dense (one-hot) label per clip.

    Args:
      label_shape: the labels' static shape, batch axis included.
      output_shape: one prediction's static shape, batch axis included.
      num_frames: T (may be None when unknown).
      integer: whether the labels have an integer dtype.
    """
    rank, out_rank = len(label_shape), len(output_shape)
    if rank == out_rank + 1:
        return True
    if rank == out_rank and rank >= 2 and num_frames is not None and label_shape[1] == num_frames:
        return integer or tuple(label_shape[1:]) != tuple(output_shape[1:])
    return False


def is_integer(x) -> bool:
    """Whether a tensor (or KerasTensor) has an integer dtype."""
    return "int" in str(getattr(x, "dtype", ""))


def at_frame(values, index, per_frame: bool):
    """The labels (or sample weights) of frame `index`: `[B, T, ...]` -> `[B, ...]`; per clip unchanged."""
    if values is None or not per_frame:
        return values
    return ops.take(values, index, axis=1)


def flatten_steps(outputs, labels, sample_weight: Optional[object], labels_per_frame: bool, weights_per_frame: bool):
    """Pairs every valid prediction with its target.

    Args:
      outputs: `[B, T', *O]`, the prediction for frame j at index j.
      labels: `[B, ...]` per clip or `[B, T, ...]` per frame.
      sample_weight: None, `[B]` or `[B, T]`.
      labels_per_frame, weights_per_frame: how to read `labels` and `sample_weight`.

    Returns:
      `(labels, predictions, sample_weight)` with a leading axis of `B * T'`.
    """
    valid = outputs.shape[1] if outputs.shape[1] is not None else ops.shape(outputs)[1]

    def flat(x, per_frame):
        if x is None:
            return None
        x = x[:, :valid] if per_frame else ops.repeat(ops.expand_dims(x, 1), valid, axis=1)
        return ops.reshape(x, (-1,) + tuple(x.shape[2:]))

    return flat(labels, labels_per_frame), flat(outputs, True), flat(sample_weight, weights_per_frame)


def clip_predictions(outputs, labels, sample_weight, labels_per_frame: bool, weights_per_frame: bool):
    """What a clip is scored on (evaluation): the mean prediction for clip labels, every frame for frame labels.

    Args and shapes as in `flatten_steps`.

    Returns:
      `(labels, predictions, sample_weight)`: `[B, ...]` for clip labels, `[B * T', ...]` for frame labels.
    """
    if labels_per_frame:
        return flatten_steps(outputs, labels, sample_weight, True, weights_per_frame)
    return labels, ops.mean(outputs, axis=1), sample_weight


def frame_target(labels, sample_weight, index, labels_per_frame: bool, weights_per_frame: bool) -> dict:
    """The target of frame `index`: `{"y": [B, ...]}`, plus `"w": [B]` when there are sample weights."""
    target = {"y": at_frame(labels, index, labels_per_frame)}
    if sample_weight is not None:
        target["w"] = at_frame(sample_weight, index, weights_per_frame)
    return target


def flatten_stream(outputs, output_targets: dict, output_valid):
    """Pairs every step's top output with the target it was scored against, weighting invalid steps 0.

    Args:
      outputs: `[B, T, *O]`, the top output of every step.
      output_targets: `{"y": [B, T, ...], "w": [B, T]}` (`"w"` optional), each step's target.
      output_valid: `[B, T]` bool.

    Returns:
      `(labels, predictions, sample_weight)` with a leading axis of `B * T`; the weights are
      shaped to broadcast against Keras' per-element losses and metrics (which reduce the last
      axis of float labels only).
    """
    def flat(x):
        return ops.reshape(x, (-1,) + tuple(x.shape[2:]))

    labels = flat(output_targets["y"])
    weight = ops.cast(flat(output_valid), "float32")
    if "w" in output_targets:
        weight = weight * ops.cast(flat(output_targets["w"]), "float32")
    rank = len(labels.shape) if is_integer(labels) else max(len(labels.shape) - 1, 1)
    weight = ops.reshape(weight, (-1,) + (1,) * (rank - 1))
    return labels, flat(outputs), weight
