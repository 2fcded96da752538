"""Moving shapes: an offline synthetic video set, generated procedurally (no download).

A shape moves at constant velocity over a static textured background, wrapping around the
borders. Two label sets:

* `"motion"`: the direction (right, left, down, up) and speed (slow, fast) of the motion, 8
  classes. No single frame reveals it; frames must be compared.
* `"appearance"`: the shape (disc, square, diamond, cross), 4 classes, visible in every frame.
* `"shape_and_direction"`: the shape and the direction of the motion, 16 classes: a single
  frame tells the shape, so a model of single frames can learn a quarter of the task at most.

Every example is a pure function of `(seed, split, index)`, rendered in TF on the fly, so the
set is deterministic, needs no preparation step, and streams as fast as the CPU renders it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

LABEL_SETS = ("motion", "appearance", "shape_and_direction")
SHAPES = ("disc", "square", "diamond", "cross")
DIRECTIONS = ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))  # (dx, dy): right, left, down, up
SPEEDS = (1.0, 3.0)  # pixels per frame at 64x64
SPLITS = {"train": 1, "validation": 2, "test": 3}
DEFAULT_SIZES = {"train": 1024, "validation": 256, "test": 256}
NUM_CLASSES = {"motion": len(DIRECTIONS) * len(SPEEDS), "appearance": len(SHAPES),
               "shape_and_direction": len(SHAPES) * len(DIRECTIONS)}


def _shape_mask(kind, dx, dy, radius):
    """Float mask of shape `kind` (int scalar) for offsets `dx, dy` `[H, W]` from its centre."""
    adx, ady = tf.abs(dx), tf.abs(dy)
    masks = tf.stack([
        dx**2 + dy**2 <= radius**2,
        tf.maximum(adx, ady) <= radius * 0.85,
        adx + ady <= radius * 1.2,
        ((adx <= radius * 0.35) & (ady <= radius)) | ((ady <= radius * 0.35) & (adx <= radius)),
    ])
    return tf.cast(tf.gather(masks, kind), tf.float32)


def render_example(seed, index, num_frames: int = 32, resolution: int = 64):
    """Renders one video and both of its labels.

    Args:
      seed: int32 `[2]` stateless seed of the split.
      index: the example's index (int scalar).
      num_frames: T.
      resolution: the frames' height and width.

    Returns:
      `(video uint8 [T, R, R, 3], motion label, appearance label)`.
    """
    seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, index), 8)
    kind = tf.random.stateless_uniform([], seeds[0], 0, len(SHAPES), dtype=tf.int32)
    direction = tf.random.stateless_uniform([], seeds[1], 0, len(DIRECTIONS), dtype=tf.int32)
    speed_class = tf.random.stateless_uniform([], seeds[2], 0, len(SPEEDS), dtype=tf.int32)
    r = float(resolution)
    start = tf.random.stateless_uniform([2], seeds[3], 0.0, r)
    radius = tf.random.stateless_uniform([], seeds[4], 0.12, 0.2) * r
    color = tf.random.stateless_uniform([3], seeds[5], 0.6, 1.0)
    coarse = tf.random.stateless_uniform([1, 8, 8, 3], seeds[6], 0.0, 0.5)
    background = tf.image.resize(coarse, [resolution, resolution], method="bilinear")[0]
    background += tf.random.stateless_uniform([resolution, resolution, 3], seeds[7], -0.05, 0.05)
    velocity = tf.gather(tf.constant(DIRECTIONS), direction) * tf.gather(tf.constant(SPEEDS), speed_class)
    velocity *= r / 64.0
    t = tf.range(num_frames, dtype=tf.float32)[:, None, None]
    grid = tf.range(resolution, dtype=tf.float32)
    xs, ys = grid[None, None, :], grid[None, :, None]
    cx = start[0] + velocity[0] * t
    cy = start[1] + velocity[1] * t
    dx = tf.math.floormod(xs - cx + r / 2, r) - r / 2  # wrap around the borders
    dy = tf.math.floormod(ys - cy + r / 2, r) - r / 2
    mask = _shape_mask(kind, dx, dy, radius)[..., None]  # [T, R, R, 1]
    frames = background[None] * (1.0 - mask) + color * mask
    video = tf.cast(tf.clip_by_value(frames * 255.0, 0, 255), tf.uint8)
    motion = direction * len(SPEEDS) + speed_class
    return video, motion, kind


def moving_shapes(split: str = "train", *, label_set: str = "motion", num_examples=None, num_frames: int = 32,
                  resolution: int = 64, seed: int = 0) -> tf.data.Dataset:
    """The unbatched dataset of `{"video": uint8 [T, R, R, 3], "label": int32}` examples.

    Args:
      split: `"train"`, `"validation"` or `"test"` (disjoint seeds).
      label_set: `"motion"`, `"appearance"` or `"shape_and_direction"` (`shape * 4 + direction`).
      num_examples: examples in the split (default 1024 train, 256 validation and test).
      num_frames: frames per video.
      resolution: frame height and width.
      seed: the dataset's seed; the same seed gives the same videos.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {', '.join(repr(s) for s in SPLITS)}; got {split!r}.")
    if label_set not in LABEL_SETS:
        raise ValueError(f"`label_set` must be one of {', '.join(repr(s) for s in LABEL_SETS)}; got {label_set!r}.")
    count = DEFAULT_SIZES[split] if num_examples is None else num_examples
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"`num_examples` must be a positive int (or None for the split's default); got "
                         f"{num_examples!r}.")
    for name, value in (("num_frames", num_frames), ("resolution", resolution)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    split_seed = tf.constant([seed, SPLITS[split]], tf.int32)

    def example(index):
        video, motion, appearance = render_example(split_seed, index, num_frames, resolution)
        labels = {"motion": motion, "appearance": appearance,
                  "shape_and_direction": appearance * len(DIRECTIONS) + motion // len(SPEEDS)}
        return {"video": video, "label": labels[label_set]}

    return tf.data.Dataset.range(count).map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
