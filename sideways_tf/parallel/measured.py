"""Whether spreading pays: one clip's gradients timed with the units over the devices and on one.

`balance` weighs the units' work and what crosses each cut. It does not see what the host pays to
launch every group's step every frame, which bounds short steps on GPUs: on two H200s VGG-8 at
112x112, B = 8, trained at 0.41-0.66x one GPU's speed spread over both. So
`SidewaysModel(devices="auto")` also times the rule's gradients of one random clip both ways, as
training runs them (JAX: per-device programs against one compiled program), and keeps one device
where the spread is not faster.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Optional, Sequence

import keras
import numpy as np

from sideways_tf.core import backends

FRAMES = 32
"""At least this many frames per timed clip (and twice the depth), as clips are trained: the placed loop
pays some costs once per clip (each group's carry set up, the gradients gathered)."""


def loop_speedup(stages, mode: str, activation_shapes, prediction_shape, frame_shape, devices: Sequence[str],
                 batch_size: int, masking: bool = True, repeats: int = 3) -> Optional[float]:
    """One device's seconds per clip of the rule's gradients over those of the units on `devices`.

    The clip is random, `[batch_size, max(2 D, FRAMES), *frame_shape]` float32 with one integer
    label per clip, and the loss the mean square of each frame's prediction: the work of training
    with any loss, not its values. Each way runs twice first (compiling), then `repeats` times,
    each waited for; the medians count.

    Args:
      stages, activation_shapes, prediction_shape: as `stage.build_stages` returns them.
      frame_shape: `F`.
      devices: one device name per unit.
      batch_size: B.
      masking: the model's `masking`.
      repeats: timed clips per way.

    Returns:
      The speed-up of the spread (> 1: it pays), or None where it is not measured: under
      TensorFlow (units in `tf.device` scopes of one program), under a `keras.distribution`, or
      where one device cannot run the clip (its memory, say).
    """
    if not backends.is_running("jax") or keras.distribution.distribution() is not None:
        return None
    num_frames = max(2 * len(stages), FRAMES)
    rng = np.random.default_rng(0)
    video = keras.ops.convert_to_tensor(rng.normal(size=(batch_size, num_frames, *frame_shape)).astype("float32"))
    labels = keras.ops.zeros((batch_size,), "int32")
    try:
        one = _clip_seconds(_clip_function(stages, mode, activation_shapes, prediction_shape, None, masking),
                            video, labels, repeats)
    except Exception:  # noqa: BLE001  (what one device cannot hold is why the units are spread)
        return None
    spread = _clip_function(stages, mode, activation_shapes, prediction_shape, list(devices), masking)
    return one / _clip_seconds(spread, video, labels, repeats)


def _clip_function(stages, mode: str, activation_shapes, prediction_shape, devices, masking: bool) -> Callable:
    """`function(video, labels) -> gradients` of the rule on the stages' current values, placed on `devices`
    (None: one device) as the model would run it."""
    from sideways_tf.core.engine import Engine

    current = backends.current()
    engine = Engine(stages, mode, activation_shapes, prediction_shape, devices,
                    programs=current.per_device_programs(devices, mode), masking=masking)
    trainable = list({id(v): v for stage in stages for v in stage.trainable_variables}.values())
    non_trainable = list({id(v): v for stage in stages for v in stage.non_trainable_variables}.values())

    def frame_loss(y, y_pred, sample_weight):
        del y, sample_weight
        return keras.ops.mean(keras.ops.square(keras.ops.cast(y_pred, "float32")))

    def gradients(params, states, video, labels):
        mapping = list(zip(trainable, params, strict=True)) + list(zip(non_trainable, states, strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            return engine.train_clip(params, states, trainable, non_trainable, video, labels, None,
                                     frame_loss).gradients

    compiled = gradients if engine.programs else current.compile_function(gradients, jit_compile=True)
    params = [keras.ops.convert_to_tensor(v.value) for v in trainable]
    states = [keras.ops.convert_to_tensor(v.value) for v in non_trainable]
    return lambda video, labels: compiled(params, states, video, labels)


def _clip_seconds(function: Callable, video, labels, repeats: int) -> float:
    """The median seconds of `function(video, labels)`, each call waited for, after two untimed calls."""

    import jax

    def once() -> float:
        start = time.perf_counter()
        jax.block_until_ready(function(video, labels))
        return time.perf_counter() - start

    for _ in range(2):
        once()
    return statistics.median(once() for _ in range(repeats))
