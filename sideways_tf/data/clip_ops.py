"""Pure TF operations on single clips, before batching. Shapes: `[T, H, W, C]` unless noted.

Indices are sampled first and only those frames decoded (`sideways_tf.data.decode`).
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf


def sample_indices(video_length, num_frames: int, stride: int = 1, training: bool = True,
                   seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Frame indices of a sub-clip: `num_frames` frames `stride` apart.

    Training draws the start uniformly; evaluation takes the centre. A video shorter than the
    sub-clip's span is loop ("torus") padded: indices wrap around modulo its length, so a 5-frame
    video gives 0, 1, 2, 3, 4, 0, 1, 2 for 8 frames.

    Args:
      video_length: N, the video's number of frames (scalar, > 0).
      num_frames: T.
      stride: k, the temporal stride (k > 1 lowers the frame rate).
      training: random start (True) or the centre (False).
      seed: a stateless seed `[2]` for the random start; None uses the global generator.

    Returns:
      int32 `[T]` indices in `[0, N)`.
    """
    if num_frames < 1 or stride < 1:
        raise ValueError(f"`num_frames` and `stride` must be positive; got {num_frames} and {stride}.")
    video_length = tf.cast(video_length, tf.int32)
    span = (num_frames - 1) * stride + 1
    slack = tf.maximum(video_length - span, 0)
    if training:
        # With a short video any start is valid (the clip wraps); otherwise the clip fits.
        high = tf.where(video_length >= span, slack + 1, video_length)
        if seed is None:
            offset = tf.random.uniform([], 0, high, dtype=tf.int32)
        else:
            offset = tf.random.stateless_uniform([], seed, 0, high, dtype=tf.int32)
    else:
        offset = slack // 2
    return (offset + tf.range(num_frames, dtype=tf.int32) * stride) % video_length


def random_crop(video: tf.Tensor, size: int, seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """The same random `size x size` window of every frame: `[T, H, W, C]` -> `[T, size, size, C]`."""
    shape = tf.shape(video)
    crop = tf.stack([shape[0], size, size, shape[3]])
    if seed is None:
        return tf.image.random_crop(video, crop)
    return tf.image.stateless_random_crop(video, crop, seed)


def center_crop(video: tf.Tensor, size: int) -> tf.Tensor:
    """The central `size x size` window of every frame: `[T, H, W, C]` -> `[T, size, size, C]`."""
    shape = tf.shape(video)
    top, left = (shape[1] - size) // 2, (shape[2] - size) // 2
    return video[:, top:top + size, left:left + size, :]


def resize_smallest_side(video: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes every frame so that its shorter side is `size` (aspect ratio kept), same dtype."""
    shape = tf.shape(video)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.minimum(h, w)
    new = tf.cast(tf.round(tf.stack([h * scale, w * scale])), tf.int32)
    new = tf.maximum(new, size)
    resized = tf.image.resize(video, new, method="bilinear", antialias=True)
    if video.dtype == tf.uint8:
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    return tf.cast(resized, video.dtype)


def random_flip_left_right(video: tf.Tensor, seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Mirrors every frame of the clip, or none, with probability 1/2."""
    coin = tf.random.uniform([]) if seed is None else tf.random.stateless_uniform([], seed)
    return tf.cond(coin < 0.5, lambda: tf.reverse(video, axis=[2]), lambda: video)


def normalize(video: tf.Tensor) -> tf.Tensor:
    """uint8 `[0, 255]` -> float32 `[-1, 1]`."""
    return tf.cast(video, tf.float32) / 127.5 - 1.0


def future_targets(clip: tf.Tensor, offset: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Splits a clip of `T + k` frames into inputs `x[0:T]` and targets `y_t = x[t + k]`.

    Args:
      clip: `[T + k, H, W, C]`.
      offset: k (the papers predict k = 8 frames ahead).

    Returns:
      `(inputs [T, H, W, C], targets [T, H, W, C])`.
    """
    return clip[:-offset], clip[offset:]


def montage_concat(videos: tf.Tensor, labels: tf.Tensor, num_shots: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Montage shots by concatenation: each clip becomes `num_shots` segments from different clips.

    Example b takes its first segment from clip b, the next from clip b+1 (modulo B), ...; each
    segment is the first `T / num_shots` frames of its clip, and the labels follow per frame.

    Args:
      videos: `[B, T, H, W, C]` with T a multiple of `num_shots`.
      labels: `[B]`.
      num_shots: how many clips each montage is made of (<= B).

    Returns:
      `(videos [B, T, H, W, C], per-frame labels [B, T])`.
    """
    segment = videos.shape[1] // num_shots
    shots = [tf.roll(videos, -i, axis=0)[:, :segment] for i in range(num_shots)]
    shot_labels = [tf.repeat(tf.roll(labels, -i, axis=0)[:, None], segment, axis=1) for i in range(num_shots)]
    return tf.concat(shots, axis=1), tf.concat(shot_labels, axis=1)


def interleave_frames(videos: tf.Tensor, labels: tf.Tensor, num_clips: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Montage by frame interleaving (supplementary material): frame 1 of clips b, b+1, ...,
    then frame 2 of each, and so on.

    Args:
      videos: `[B, T, H, W, C]`, T a multiple of `num_clips`.
      labels: `[B]`.
      num_clips: how many clips are interleaved (<= B).

    Returns:
      `(videos [B, T, H, W, C], per-frame labels [B, T])`: frame t comes from clip
      `b + t mod n`, its frame `t // n`.
    """
    per_clip = videos.shape[1] // num_clips
    clips = tf.stack([tf.roll(videos, -i, axis=0)[:, :per_clip] for i in range(num_clips)], axis=2)
    clip_labels = tf.stack([tf.roll(labels, -i, axis=0) for i in range(num_clips)], axis=1)  # [B, n]
    shape = tf.concat([[-1, per_clip * num_clips], tf.shape(videos)[2:]], 0)
    return tf.reshape(clips, shape), tf.tile(clip_labels, [1, per_clip])
