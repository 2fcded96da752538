"""Reading a run's TensorBoard scalars back: for notebooks, reports and tests.

    curves = sw.training.read_scalars("runs/hmdb/train")
    steps, values = curves["fidelity/unit1"]
"""

from __future__ import annotations

import glob
import os
from typing import Optional, Sequence

import numpy as np


def read_scalars(log_dir: str, tags: Optional[Sequence[str]] = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The scalars of the event files in `log_dir` (not its subfolders): `{tag: (steps [N], values [N])}`.

    Both kinds of scalar are read: `tf.summary.scalar`'s (a tensor) and Keras' TensorBoard
    callback's. Points are sorted by step; a step written twice keeps its last value.

    Args:
      log_dir: a folder of `events.out.tfevents.*` files, such as a run's `train` or `validation`.
      tags: only these tags (default: all).

    Raises:
      ValueError: `log_dir` holds no event file.
    """
    import tensorflow as tf

    paths = sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*")))
    if not paths:
        raise ValueError(f"log_dir={log_dir!r} holds no TensorBoard event file (events.out.tfevents.*).")
    points: dict[str, dict[int, float]] = {}
    for path in paths:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if tags is not None and value.tag not in tags:
                    continue
                if value.HasField("simple_value"):
                    number = value.simple_value
                elif value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tf.make_ndarray(value.tensor))
                else:
                    continue  # images, histograms, text
                points.setdefault(value.tag, {})[int(event.step)] = float(number)
    return {tag: (np.array(sorted(by_step)), np.array([by_step[s] for s in sorted(by_step)]))
            for tag, by_step in sorted(points.items())}
