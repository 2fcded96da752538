"""Callbacks for the papers' stability views: throughput, pseudo-gradient fidelity, frame images."""

from __future__ import annotations

import math
import os
import re
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf


class FramesPerSecond(keras.callbacks.Callback):
    """Adds `frames_per_second` (training frames per wall-clock second) to each epoch's logs.

    Place it before `keras.callbacks.TensorBoard` so that the value is written there.

    Args:
      frames_per_batch: B * T.
    """

    def __init__(self, frames_per_batch: int):
        super().__init__()
        self.frames_per_batch = frames_per_batch

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._batches = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._batches:
            logs["frames_per_second"] = self._batches * self.frames_per_batch / (time.perf_counter() - self._start)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first non-finite loss (per batch) or weight (per epoch), saying where.

    After `fit`, `problem` is None or a sentence naming the epoch, the batch and the loss, or the
    first variable that holds a NaN or an infinity.
    """

    def __init__(self):
        super().__init__()
        self.problem: Optional[str] = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(f"the training loss became {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        if self.problem is None:
            for variable in self.model.weights:
                if not np.isfinite(np.asarray(variable)).all():
                    self._stop(f"variable {variable.path} holds NaN or infinite values after epoch {epoch + 1}")
                    break

    def _stop(self, problem: str) -> None:
        self.problem = problem
        self.model.stop_training = True


GRADIENT_STATS = re.compile(r"^(val_)?unit\d+_grad_(mean|norm)$")


class EpochSummary(keras.callbacks.Callback):
    """One compact line per epoch: loss, metrics, validation and frames/s, in that order.

    The per-unit gradient statistics (`unit{i}_grad_mean`/`_norm`) stay out of the terminal:
    they are in TensorBoard. Use with `fit(verbose=0)`.

    Args:
      epochs: the number of epochs (for `epoch 3/12`).
      print_fn: where lines go.
    """

    def __init__(self, epochs: int, print_fn=print):
        super().__init__()
        self.epochs, self.print_fn = epochs, print_fn

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: v for k, v in (logs or {}).items() if not GRADIENT_STATS.match(k) and k != "learning_rate"}
        order = sorted(logs, key=lambda k: (k == "frames_per_second", k.startswith("val_"),
                                            k not in ("loss", "val_loss"), k))
        parts = [f"{k} {logs[k]:.0f}" if k == "frames_per_second" else f"{k} {float(logs[k]):.4f}" for k in order]
        seconds = time.perf_counter() - self._start
        self.print_fn(f"epoch {epoch + 1:>3}/{self.epochs}  " + "  ".join(parts) + f"  ({seconds:.0f} s)")


def unit_cosines(model, video, labels) -> list[float]:
    """Per unit, the cosine similarity between its pseudo-gradient and the exact backprop gradient.

    Args:
      model: a compiled `SidewaysModel`.
      video: `[B, T, *F]`.
      labels: the batch's labels.

    Returns:
      One cosine per unit (1.0 for a unit whose two gradients are both zero).
    """
    pseudo = model.pseudo_gradients(video, labels)
    exact = model.exact_gradients(video, labels)
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}
    cosines = []
    for stage in model.stages:
        indices = [position[id(v)] for v in stage.trainable_variables]
        if not indices:
            cosines.append(1.0)
            continue
        a = np.concatenate([np.ravel(pseudo[i]) for i in indices])
        b = np.concatenate([np.ravel(exact[i]) for i in indices])
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        cosines.append(float(np.dot(a, b) / norms) if norms > 0 else 1.0)
    return cosines


class PseudoGradientFidelity(keras.callbacks.Callback):
    """Every `every` steps, the per-unit cosine between pseudo-gradients and exact backprop gradients.

    Computed on a fixed probe batch and written as `fidelity/unit{i}` scalars to `log_dir`
    (and kept in `self.history`: a list of `(step, [cosine per unit])`).

    Args:
      probe: `(video, labels)`, the batch to compare on.
      every: the period in training steps.
      log_dir: where to write the summaries (None: only `self.history`).
    """

    def __init__(self, probe, every: int = 100, log_dir: Optional[str] = None):
        super().__init__()
        if every < 1:
            raise ValueError(f"`every` must be a positive number of steps; got {every!r}.")
        self.video, self.labels = probe
        self.every = every
        self.log_dir = log_dir
        self.history = []
        self._writer = None
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every:
            return
        cosines = unit_cosines(self.model, self.video, self.labels)
        self.history.append((self._step, cosines))
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default(step=self._step):
                for k, cosine in enumerate(cosines):
                    tf.summary.scalar(f"fidelity/unit{k + 1}", cosine)
            self._writer.flush()


class FramePredictionImages(keras.callbacks.Callback):
    """At each epoch's end, image summaries of a probe clip: inputs, targets and predictions.

    Args:
      probe: `(video [B, T, H, W, 3], targets [B, T, H, W, 3])` in [-1, 1].
      log_dir: where to write them.
      max_frames: frames shown per row.
    """

    def __init__(self, probe, log_dir: str, max_frames: int = 8):
        super().__init__()
        self.video, self.targets = probe
        self.log_dir = log_dir
        self.max_frames = max_frames
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        predictions = self.model.predict(self.video[:1], verbose=0)[0]  # [T', H, W, 3]
        frames = min(self.max_frames, predictions.shape[0])

        def strip(clip):  # [T, H, W, 3] in [-1, 1] -> [1, H, T*W, 3] in [0, 1]
            clip = np.clip((np.asarray(clip[:frames]) + 1.0) / 2.0, 0.0, 1.0)
            return np.concatenate(list(clip), axis=1)[None]

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "images"))
        with self._writer.as_default(step=epoch):
            tf.summary.image("inputs", strip(self.video[0]))
            tf.summary.image("targets", strip(self.targets[0]))
            tf.summary.image("predictions", strip(predictions))
        self._writer.flush()
