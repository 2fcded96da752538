"""The real-time setting of the Sideways paper (Section 4.3, Table 3), as pure functions.

Frames arrive one per computation step and every unit takes one step. Backprop on a D-unit
network takes a frame, then is blocked for 2(D-1) steps (its forward and backward passes through
the other units) and drops the frames that arrive meanwhile; its last prediction is shown until
the next one ("the last produced output is copied"). Sideways consumes every frame; its
prediction at step t is for frame t - (D-1).
"""

from __future__ import annotations

import numpy as np


def blocked_frames(num_frames: int, depth: int) -> np.ndarray:
    """Which frames per-frame backprop consumes: `[num_frames]` bool, every (2D - 1)-th from frame 0.

    Example: D = 5 consumes frames 0, 9, 18, ... and drops 1..8, 10..17, ... (the paper's "ignoring
    data frames between t1 and t10").
    """
    if depth < 1 or num_frames < 0:
        raise ValueError(f"`depth` must be >= 1 and `num_frames` >= 0; got depth={depth}, num_frames={num_frames}.")
    consumed = np.zeros(num_frames, bool)
    consumed[:: 2 * depth - 1] = True
    return consumed


def held_predictions(predictions: np.ndarray, consumed: np.ndarray) -> np.ndarray:
    """Shows every consumed frame's prediction until the next one: `[n, ...]` -> `[N, ...]`.

    Args:
      predictions: one per consumed frame, in order.
      consumed: `[N]` bool (`blocked_frames`); frame 0 must be consumed.
    """
    consumed = np.asarray(consumed, bool)
    if len(consumed) and not consumed[0]:
        raise ValueError("the first frame must be consumed (nothing to hold before it).")
    if int(consumed.sum()) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {int(consumed.sum())} consumed frames.")
    return np.asarray(predictions)[np.cumsum(consumed) - 1]


def online_errors(predictions: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Per-frame mean squared error between what is shown and the true frames: `[N, ...]` x 2 -> `[N]`."""
    predictions, frames = np.asarray(predictions, "float64"), np.asarray(frames, "float64")
    if predictions.shape != frames.shape:
        raise ValueError(f"predictions {predictions.shape} and frames {frames.shape} differ in shape.")
    return ((predictions - frames) ** 2).reshape(len(frames), -1).mean(axis=1)
