"""Decoding only the frames a clip needs."""

from __future__ import annotations

import tensorflow as tf


def decode_frames(encoded: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """Decodes the JPEG (or PNG) frames at `indices` of an encoded video.

    Args:
      encoded: string `[N]`, one encoded image per frame (tfds `Video` with `SkipDecoding`).
      indices: int `[T]`.

    Returns:
      uint8 `[T, H, W, 3]`.
    """
    return tf.map_fn(
        lambda image: tf.io.decode_image(image, channels=3, expand_animations=False),
        tf.gather(encoded, indices),
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )
