"""Online learning on a stream: a `SidewaysModel` updated every L frames, fed frames as they come.

The model is stateful, so frames can be fed one at a time or in chunks of whatever arrived:
the updates are the same (`docs/streaming.md`: "a stream cut into chunks gives exactly the updates
of the same stream as one clip").
"""

from __future__ import annotations

import collections
from typing import Optional, Sequence

import keras
import numpy as np

TASKS = ("autoencode", "predict")


def autoencoder(mode: str, frame_shape: Sequence[int], learning_rate: float = 1e-3, width: float = 1.0,
                update_every: Optional[int] = 1, batch_size: int = 1, seed: Optional[int] = None):
    """The Sideways paper's auto-encoder (`models.encoder_decoder`) as a stateful online learner.

    Args:
      mode: the rule.
      frame_shape: `(H, W, C)`, H and W multiples of 8.
      learning_rate: Adam's.
      width: scales the hidden widths.
      update_every: L (1: the papers' per-frame update).
      batch_size: B, the number of streams.
      seed: Keras' random seed for the initial weights.

    Returns:
      A compiled, built `SidewaysModel` with an MSE loss.
    """
    import sideways_tf as sw

    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = sw.SidewaysModel(sw.models.encoder_decoder(frame_shape[-1], width=width), mode=mode,
                             update_every=update_every, stateful=True)
    model.build((batch_size, None) + tuple(frame_shape))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 frames -> float32 in [0, 1]."""
    return np.asarray(frames, "float32") / 255.0


class OnlineLearner:
    """Feeds one stream (B = 1) to a stateful model with per-frame targets.

    Args:
      model: a stateful `SidewaysModel` compiled with a per-pixel loss (e.g. `autoencoder`).
      task: `"autoencode"` (the target of frame t is frame t) or `"predict"` (frame t + offset).
      offset: k for `"predict"`; frame t is learned once frame t + k has arrived.
      chunk: frames per training call (a fixed length, so the step compiles once); frames
        wait until a whole chunk is ready.
    """

    def __init__(self, model, task: str = "autoencode", offset: int = 0, chunk: int = 1):
        if task not in TASKS:
            raise ValueError(f"`task` must be one of {TASKS}; got {task!r}.")
        if task == "predict" and offset < 1:
            raise ValueError(f"`offset` must be >= 1 for task 'predict'; got {offset}.")
        if chunk < 1:
            raise ValueError(f"`chunk` must be >= 1; got {chunk}.")
        self.model, self.task, self.chunk = model, task, chunk
        self.offset = offset if task == "predict" else 0
        self._waiting: collections.deque = collections.deque()
        self.frames_learned = 0

    def learn(self, frames: np.ndarray) -> Optional[float]:
        """Learns from the frames that arrived (uint8 `[n, H, W, C]`); returns the loss, or None if nothing was ready.

        The loss is the model's online loss on these steps: each output scored before the
        update it leads to.
        """
        self._waiting.extend(to_float(frames))
        ready = (len(self._waiting) - self.offset) // self.chunk * self.chunk
        if ready <= 0:
            return None
        window = np.stack(list(self._waiting))
        losses = []
        for start in range(0, ready, self.chunk):
            stop = start + self.chunk
            logs = self.model.train_on_batch(window[None, start:stop],
                                             window[None, start + self.offset:stop + self.offset], return_dict=True)
            losses.append(float(logs["loss"]))
        for _ in range(ready):
            self._waiting.popleft()
        self.frames_learned += ready
        return float(np.mean(losses))

    def reconstruct(self, recent: np.ndarray) -> np.ndarray:
        """What the model now outputs for the oldest of the last D frames (uint8 `[D, H, W, C]` -> float `[H, W, C]`).

        Runs a separate inference pipeline on these frames with the current weights; training
        state is untouched.
        """
        clip = to_float(recent)[None]
        prediction = self.model.predict_on_batch(clip)
        return np.asarray(prediction)[0, 0]
