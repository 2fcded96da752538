"""Backups that resume a run at exactly the optimizer step where it stopped.

Keras' `BackupAndRestore` resumes at the start of the epoch it recorded, so a run backed up in the
middle of an epoch replays that epoch's first steps (and after a resume it records epoch 0 until an
epoch ends). Here the position is the optimizer's own step counter, saved with the weights: a
resumed run trains the rest of the interrupted epoch, then the following ones, and ends with
exactly the optimizer steps of an uninterrupted run.

Layout, two complete copies so that a run killed while writing resumes from the other:

    backup/current/{weights.weights.h5, state.json}    the latest
    backup/previous/...                                 the one before
    backup/incoming/...                                 being written (renamed to current when done)
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Optional

import keras

WEIGHTS = "weights.weights.h5"
STATE = "state.json"


class Backup(keras.callbacks.Callback):
    """Saves the model (and its optimizer) every `every` steps, or at every epoch's end.

    Args:
      folder: the backup folder (`model_dir/backup`).
      every: optimizer steps between backups (None: at the end of every epoch).
    """

    def __init__(self, folder: str, every: Optional[int] = None):
        super().__init__()
        if every is not None and every < 1:
            raise ValueError(f"`every` must be None (every epoch) or a positive number of steps; got {every!r}.")
        self.folder, self.every = folder, every

    def on_train_batch_end(self, batch, logs=None):
        if self.every is not None and int(self.model.optimizer.iterations.numpy()) % self.every == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        if self.every is None:
            self.save()

    def save(self) -> None:
        """Writes a complete copy into `incoming/`, then makes it `current/` (the old one `previous/`)."""
        incoming, current, previous = (os.path.join(self.folder, n) for n in ("incoming", "current", "previous"))
        shutil.rmtree(incoming, ignore_errors=True)
        os.makedirs(incoming)
        self.model.save_weights(os.path.join(incoming, WEIGHTS))
        with open(os.path.join(incoming, STATE), "w", encoding="utf-8") as f:
            json.dump({"optimizer_steps": int(self.model.optimizer.iterations.numpy())}, f)
        if os.path.isdir(current):
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(current, previous)
        os.replace(incoming, current)


def restore(model: keras.Model, folder: str) -> int:
    """Loads the latest readable copy of `folder` into `model`; returns its optimizer steps (0 without one).

    Raises:
      ValueError: the folder holds copies but none of them is readable.
    """
    copies = [os.path.join(folder, n) for n in ("current", "previous") if os.path.isdir(os.path.join(folder, n))]
    problems = []
    for copy in copies:
        try:
            with open(os.path.join(copy, STATE), encoding="utf-8") as f:
                steps = int(json.load(f)["optimizer_steps"])
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(os.path.join(copy, WEIGHTS))
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
            problems.append(f"{copy}: {error}")
            continue
        if int(model.optimizer.iterations.numpy()) != steps:
            problems.append(f"{copy}: its weights hold {int(model.optimizer.iterations.numpy())} optimizer steps, "
                            f"its state {steps}")
            continue
        return steps
    if problems:
        raise ValueError(f"cannot resume from the backup in {folder}: no copy is readable ({'; '.join(problems)}); "
                         "delete that folder to restart the run, or pass --overwrite.")
    return 0


def remaining_schedule(steps_done: int, steps_per_epoch: int) -> tuple[int, int]:
    """`(epoch, steps left in it)` after `steps_done` optimizer steps: where a resumed run starts.

    >>> remaining_schedule(7, 3)    # 2 epochs done, 1 step of the third: 2 steps of epoch 2 remain
    (2, 2)
    """
    epoch, into = divmod(steps_done, steps_per_epoch)
    return epoch, steps_per_epoch - into
