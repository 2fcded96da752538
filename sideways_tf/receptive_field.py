"""Which input frames a prediction depends on: a model's temporal receptive field, measured.

The Skip-Sideways paper (Section 4) says that with shortcuts "individual units have indirect
access to more frames" and that "their receptive fields increase linearly with the depth of the
network", whereas Sideways' temporal receptive field is one frame. This measures it rather than
deriving it: each input frame in turn has noise added to it, and a frame belongs to the field
when the chosen prediction changes.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from keras import ops


def temporal_receptive_field(model, video, step: int = -1, tolerance: float = 1e-6,
                             batch_size: Optional[int] = None, seed: int = 0) -> list[int]:
    """The input frames on which one of a model's per-step predictions depends.

    Standard-normal noise is added to every frame `j` of the clip in turn (one perturbed copy of
    the clip per frame), and `j` is in the field when the prediction at `step` moves by more than
    `tolerance * (1 + max |prediction|)` in any clip. Inference mode (batch norm's moving
    statistics, no dropout), so the answer is a property of the network and its weights.

    Args:
      model: a built `SidewaysModel` (or any Keras model mapping `[B, T, *F]` to `[B, T', *O]`).
      video: `[B, T, *F]` clips; the field is the union over them.
      step: the index of the prediction in the model's output `[B, T', *O]` (default the last;
        a `SidewaysModel`'s output starts `inference_latency` frames late).
      tolerance: the relative change that counts as a dependence.
      batch_size: perturbed clips per call (default all `B * (T + 1)` at once).
      seed: of the added noise.

    Returns:
      The sorted frame indices `j` in `[0, T)` of the field; its length is the field's size.

    Raises:
      ValueError: naming the argument, for a video that is not `[B, T, ...]`, a `step` outside the
        output, a negative tolerance or a batch size below 1.
    """
    clips = np.asarray(ops.convert_to_numpy(video))
    if clips.ndim < 3:
        raise ValueError(f"`video` must be clips [B, T, *F]; got an array of shape {clips.shape}.")
    if not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ValueError(f"`tolerance` must be a number >= 0; got {tolerance!r}.")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer or None; got {batch_size!r}.")
    b, t = clips.shape[:2]
    noise = np.random.default_rng(seed).standard_normal(clips.shape).astype(clips.dtype)
    # Copy 0 of each clip is the clip itself; copy j + 1 has noise added to frame j: [B, T + 1, T, *F].
    copies = np.repeat(clips[:, None], t + 1, axis=1)
    for j in range(t):
        copies[:, j + 1, j] += noise[:, j]
    flat = copies.reshape((b * (t + 1),) + clips.shape[1:])
    size = batch_size or flat.shape[0]
    outputs = np.concatenate([np.asarray(ops.convert_to_numpy(model(flat[i:i + size])))
                              for i in range(0, flat.shape[0], size)])
    steps = outputs.shape[1]
    if not isinstance(step, int) or not -steps <= step < steps:
        raise ValueError(f"`step` must index the model's {steps} predictions per clip (from {-steps} to "
                         f"{steps - 1}); got {step!r}. A clip of {t} frames gives {steps}: give a longer clip.")
    chosen = outputs[:, step].reshape(b, t + 1, -1)
    reference = chosen[:, :1]
    moved = np.abs(chosen[:, 1:] - reference).max(axis=(0, 2))
    bound = tolerance * (1.0 + float(np.abs(reference).max()))
    return [j for j in range(t) if moved[j] > bound]
