"""Video input pipelines: clip operations, tfds builders, the moving-shapes set, `load`.

Names are imported on first use, so `sideways_tf.data.video_io` (PyAV only) can be used without
importing TensorFlow, which the tf.data pipelines need.
"""

import importlib

_NAMES = {
    "center_crop": "clip_ops", "future_targets": "clip_ops", "interleave_frames": "clip_ops",
    "montage_concat": "clip_ops", "normalize": "clip_ops", "random_crop": "clip_ops",
    "random_flip_left_right": "clip_ops", "resize_smallest_side": "clip_ops", "sample_indices": "clip_ops",
    "decode_frames": "decode", "moving_shapes": "moving_shapes", "DATASETS": "pipeline", "load": "pipeline",
}


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"sideways_tf.data.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'sideways_tf.data' has no attribute {name!r}")


__all__ = sorted(_NAMES)
