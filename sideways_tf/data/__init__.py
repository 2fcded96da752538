"""Video input pipelines: clip operations, tfds builders, the moving-shapes set, `load`."""

from sideways_tf.data.clip_ops import (
    center_crop,
    future_targets,
    interleave_frames,
    montage_concat,
    normalize,
    random_crop,
    random_flip_left_right,
    resize_smallest_side,
    sample_indices,
)
from sideways_tf.data.decode import decode_frames
from sideways_tf.data.loading import DATASETS, load
from sideways_tf.data.moving_shapes import moving_shapes

__all__ = ["DATASETS", "center_crop", "decode_frames", "future_targets", "interleave_frames", "load",
           "montage_concat", "moving_shapes", "normalize", "random_crop", "random_flip_left_right",
           "resize_smallest_side", "sample_indices"]
