"""Whether spreading pays: one clip's gradients timed with the units over the devices and on one.

`balance` weighs the units' work and what crosses each cut. It does not see what the host pays to
launch every group's step every frame, which bounds short steps on GPUs: on two H200s VGG-8 at
112x112, B = 8, trained at 0.41-0.66x one GPU's speed spread over both. So
`SidewaysModel(devices="auto")` also times the rule's gradients of one random clip both ways, as
training runs them (JAX: per-device programs against one compiled program), and keeps one device
where the spread is not faster.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import keras
import numpy as np

from sideways_tf.core import backends
from sideways_tf.parallel.balance import Balance, call_seconds, cut_times, default_device_names, grouped, unit_times

FRAMES = 32
"""At least this many frames per timed clip (and twice the depth), as clips are trained: the placed loop
pays some costs once per clip (each group's carry set up, the gradients gathered)."""


def auto_plan(stages, activation_shapes, prediction_shape, frame_shape, mode: str, batch_size: int,
              masking: bool = True) -> Optional[Balance]:
    """`SidewaysModel(devices="auto")`: the built stages balanced over every device there is, and
    (JAX) the spread's speed-up measured on a clip (`loop_speedup`; `Balance.pays`).

    Every accelerator the backend lists (else every CPU device; under `data_and_stages`, the
    first replica's stage devices), at most one per unit. None when there is only one.
    """
    names = default_device_names(len(stages))
    if len(names) < 2:
        return None
    cuts = cut_times(activation_shapes, stages[0].compute_dtype, mode, batch_size, 200.0)
    plan = grouped(unit_times(stages, activation_shapes, frame_shape, mode, batch_size, repeats=5), names, cuts)
    return plan._replace(measured_speedup=loop_speedup(stages, mode, activation_shapes, prediction_shape,
                                                       frame_shape, plan.devices, batch_size, masking))


def loop_speedup(stages, mode: str, activation_shapes, prediction_shape, frame_shape, devices: Sequence[str],
                 batch_size: int, masking: bool = True, repeats: int = 3) -> Optional[float]:
    """One device's seconds per clip of the rule's gradients over those of the units on `devices`.

    The clip is random, `[batch_size, max(2 D, FRAMES), *frame_shape]` float32 with one integer
    label per clip, and the loss the mean square of each frame's prediction: the work of training
    with any loss, not its values. Each way runs twice first (compiling), then `repeats` times,
    each waited for (`balance.call_seconds`, one call a round); the medians count.

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
        one = call_seconds(_clip_function(stages, mode, activation_shapes, prediction_shape, None, masking),
                           (video, labels), repeats=1, rounds=repeats)
    except Exception:  # noqa: BLE001  (what one device cannot hold is why the units are spread)
        return None
    spread = _clip_function(stages, mode, activation_shapes, prediction_shape, list(devices), masking)
    return one / call_seconds(spread, (video, labels), repeats=1, rounds=repeats)


def _clip_function(stages, mode: str, activation_shapes, prediction_shape, devices, masking: bool) -> Callable:
    """`function(video, labels) -> the sum of the gradients` of the rule on the stages' current values (one
    scalar that waits for every group, for `balance.call_seconds`), placed on `devices` (None: one device) as
    the model would run it."""
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
            result = engine.train_clip(params, states, trainable, non_trainable, video, labels, None, frame_loss)
        return engine.place.total([keras.ops.sum(keras.ops.cast(g, "float32")) for g in result.gradients])

    compiled = gradients if engine.programs else current.compile_function(gradients, jit_compile=True)
    params = [keras.ops.convert_to_tensor(v.value) for v in trainable]
    states = [keras.ops.convert_to_tensor(v.value) for v in non_trainable]
    return lambda video, labels: compiled(params, states, video, labels)

