"""Balance by time: group consecutive units over devices so that the slowest device does the least.

With units over devices, a computation step lasts as long as its slowest device's group (every
device waits for the others' messages). `balance` times each unit's forward and VJP on a
batch of frames, as the pipeline runs them (inputs already on the device, nothing copied back),
adds to each cut what crosses it every step (the activation forward, its gradient message back,
and in the skip modes the shortcut's input and message) at the link's bandwidth, and
`partition` cuts the units into consecutive groups that minimise the largest group's time (as
torchgpipe's balance by time does). The ideal speed-up over one device is then
`sum(unit times) / max(group times)`.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional, Sequence

import keras
import numpy as np

from sideways_tf.core import backends, pipeline, schedule
from sideways_tf.core.stage import build_stages
from sideways_tf.parallel.mesh import stage_devices


class Balance(NamedTuple):
    """Units grouped over devices.

    Attributes:
      devices: one device name per unit: `SidewaysModel(units, devices=...)`.
      groups: per device, the units (0-based) it runs.
      unit_ms: per unit, its forward + VJP time in milliseconds (per call of back-to-back calls).
      group_ms: per device, the sum of its units' times and of the cost of the cut after it.
      ideal_speedup: `sum(unit_ms) / max(group_ms)`: the speed-up over one device if
        nothing but the units' work and the crossings took time.
      cut_ms: per unit k < D - 1, what a cut after it costs per step (its crossings' bytes
        over the link's bandwidth); empty when not estimated.
      measured_speedup: one device's time for a clip's gradients over the spread units' time,
        where `SidewaysModel(devices="auto")` measured it (`parallel.measured`); else None.
    """

    devices: list
    groups: list
    unit_ms: list
    group_ms: list
    ideal_speedup: float
    cut_ms: list = []
    measured_speedup: Optional[float] = None

    @property
    def pays(self) -> bool:
        """Whether to spread the units: the measured speed-up is above 1, or none was measured."""
        return self.measured_speedup is None or self.measured_speedup > 1.0


def partition(costs: Sequence[float], num_groups: int, cut_costs: Optional[Sequence[float]] = None
              ) -> list[list[int]]:
    """Consecutive groups of `costs`' indices that minimise the largest group cost.

    A group's cost is the sum of its units' costs, plus `cut_costs[k]` when it ends at unit k
    before the last. Exact (dynamic programming over the cut points). Among equally good cuts,
    the earliest groups are kept as long as possible.

    Args:
      costs: per unit, a non-negative cost.
      num_groups: how many groups, 1 <= num_groups <= len(costs).
      cut_costs: None, or per unit k < len(costs) - 1 the cost of a cut after it.

    Returns:
      `num_groups` non-empty lists of consecutive indices covering `range(len(costs))`.

    Raises:
      ValueError: when `num_groups` is out of range or a cost is negative.
    """
    n = len(costs)
    if not 1 <= num_groups <= n:
        raise ValueError(f"`num_devices` must be between 1 and the number of units ({n}); got {num_groups}.")
    if any(c < 0 for c in costs):
        raise ValueError(f"`costs` must be non-negative; got {list(costs)}.")
    prefix = np.concatenate([[0.0], np.cumsum(np.asarray(costs, dtype=np.float64))])
    ends = list(cut_costs or [0.0] * (n - 1)) + [0.0]  # the cost of a group that ends at unit i - 1
    # best[g][i]: the smallest possible largest sum when the first i units form g groups.
    best = np.full((num_groups + 1, n + 1), np.inf)
    cut = np.zeros((num_groups + 1, n + 1), dtype=int)
    best[0][0] = 0.0
    for g in range(1, num_groups + 1):
        for i in range(g, n - (num_groups - g) + 1):
            for j in range(i - 1, g - 2, -1):  # the last group is units j..i-1; latest j first
                value = max(best[g - 1][j], prefix[i] - prefix[j] + ends[i - 1])
                if value < best[g][i]:
                    best[g][i], cut[g][i] = value, j
    groups, end = [], n
    for g in range(num_groups, 0, -1):
        start = cut[g][end]
        groups.append(list(range(start, end)))
        end = start
    return groups[::-1]


def default_device_names(num_devices: int) -> list[str]:
    """The first `num_devices` accelerators of the running backend (else CPUs), as device names.

    Under a data x stage distribution (`data_and_stages`), its first replica's stage devices.
    """
    stages = stage_devices()
    if stages is not None:
        return stages[:num_devices]
    return backends.current().device_names(num_devices)


def unit_times(stages, activation_shapes, frame_shape, mode: str, batch_size: int, repeats: int) -> list[float]:
    """Per stage, the median time in ms of its compiled forward + VJP, as a pipeline step runs it.

    Unit 0 takes no gradient for its input frame; a shortcut input is differentiated in
    `"skip_sideways"` only; the top unit's cotangent comes from a loss (here its sum). The
    inputs are put on the device once, and each call returns one scalar that depends on every
    result, so that no host transfer is timed (at 224x224 they took longer than the units);
    calls follow one another as in the frame loop (`call_seconds`).

    Args:
      stages, activation_shapes: as `stage.build_stages` returns them.
      frame_shape: `F`.
      mode: the model's mode.
      batch_size: B of the random inputs.
      repeats: back-to-back calls per timed round (`call_seconds`).
    """
    shapes = [tuple(frame_shape)] + [tuple(s) for s in activation_shapes]
    rng = np.random.default_rng(0)
    times = []

    def tensor(x):
        return None if x is None else keras.ops.convert_to_tensor(x)

    for k, stage in enumerate(stages):
        dtype = stage.compute_dtype
        direct = rng.normal(size=(batch_size,) + shapes[k]).astype(dtype)
        shortcut = rng.normal(size=(batch_size,) + shapes[k - 1]).astype(dtype) if stage.has_shortcut else None
        params = [keras.ops.convert_to_tensor(v.value) for v in stage.trainable_variables]
        top = k == len(stages) - 1
        cotangent = None if top else np.ones((batch_size,) + shapes[k + 1], dtype)
        rule = schedule.rule(mode, len(stages))
        work = _forward_and_vjp(stage, k == 0, shortcut is not None and rule.shortcut_gradients, top)
        compiled = backends.current().compile_function(work, jit_compile=True)
        args = (params, tensor(direct), tensor(shortcut), tensor(cotangent))
        times.append(1e3 * call_seconds(compiled, args, repeats))
    return times


def call_seconds(compiled, args, repeats: int, rounds: int = 3) -> float:
    """Seconds per call of `compiled(*args)` (a scalar result) when calls follow one another.

    Each round dispatches `repeats` calls back to back and waits once, for all of them, at the
    end; the median over `rounds` of a round's mean counts. An accelerator then runs one call
    while the host launches the next, as a group's program runs frame after frame, so what each
    call pays once (the wait for its result, its launch where its kernels outlast it) is not
    counted per call. Waiting after every call made groups of ResNet50's and VGG-16's units look
    1.6-2.0 times as long as their compiled steps on an H200; back to back, 1.09-1.15 times.
    Two calls first, to compile and warm up.
    """
    for _ in range(2):
        float(compiled(*args))
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        results = [compiled(*args) for _ in range(repeats)]
        for result in results:
            float(result)
        means.append((time.perf_counter() - start) / repeats)
    return float(np.median(means))


def cut_times(activation_shapes, dtype, mode: str, batch_size: int, link_gb_per_s: float) -> list[float]:
    """Per unit k < D - 1, the ms per step that a cut after it sends over a link of `link_gb_per_s`.

    `h_k` goes forward and its gradient message comes back; in the skip modes `h_{k-1}` also
    crosses to unit k+1 (and its shortcut message back, in `"skip_sideways"`).
    """
    size = np.dtype(dtype).itemsize * batch_size
    per_shape = [size * int(np.prod(s)) for s in activation_shapes]
    rule = schedule.rule(mode, len(activation_shapes) + 1)
    skip = rule.shortcuts
    back = 2 if rule.shortcut_gradients else 1
    costs = []
    for k in range(len(activation_shapes)):
        crossing = 2 * per_shape[k] + (back * per_shape[k - 1] if skip and k >= 1 else 0)
        costs.append(1e3 * crossing / (link_gb_per_s * 1e9))
    return costs


def _forward_and_vjp(stage, first: bool, shortcut_is_primal: bool, top: bool):
    """`(params, direct, shortcut, cotangent) -> a scalar of everything`: one unit's work in a pipeline
    step (`pipeline.unit_vjp`), reduced so that nothing of it can be left out."""
    state = [keras.ops.convert_to_tensor(v.value) for v in stage.non_trainable_variables]

    def forward_and_vjp(params, direct, shortcut, cotangent):
        out, _, _, grads = pipeline.unit_vjp(stage, params, state, direct, shortcut, first, shortcut_is_primal,
                                             None if top else cotangent, keras.ops.sum if top else None)
        leaves = [x for x in keras.tree.flatten((out, grads)) if x is not None]
        return sum(keras.ops.sum(keras.ops.cast(x, "float32")) for x in leaves)

    return forward_and_vjp


def balance(
    units: Sequence[keras.layers.Layer],
    frame_shape: Sequence[int],
    num_devices: int,
    mode: str = "sideways",
    fusion: str = "concat",
    shortcut: str = "auto",
    batch_size: int = 8,
    repeats: int = 10,
    device_names: Optional[Sequence[str]] = None,
    link_gb_per_s: Optional[float] = 200.0,
) -> Balance:
    """Times each unit and groups consecutive units over `num_devices` devices by time.

    Example:
    ```python
    plan = sw.parallel.balance(units, frame_shape=(112, 112, 3), num_devices=2, mode="skip_sideways")
    print(plan.groups, plan.ideal_speedup)
    model = sw.SidewaysModel(units, mode="skip_sideways", devices=plan.devices)
    ```

    Args:
      units: the D units, as given to `SidewaysModel` (built here if they are not).
      frame_shape: `F`, one frame's shape without the batch axis.
      num_devices: how many devices to spread the units over (at most D).
      mode, fusion, shortcut: as in `SidewaysModel` (the skip modes' units read a fused input).
      batch_size: frames per timed call (time the batch you will train with).
      repeats: back-to-back calls per timed round (3 rounds per unit; the median round counts).
      device_names: `num_devices` device names (default: the first replica's stage devices
        under `data_and_stages`, else the backend's first accelerators, else CPUs).
      link_gb_per_s: the bandwidth between two devices, for what a cut costs (200: a
        device-to-device copy between H200s over NVLink, measured); None: cuts cost nothing.

    Returns:
      A `Balance`.

    Raises:
      ValueError: when `num_devices` is out of range, or `device_names` has the wrong length.
    """
    if not 1 <= num_devices <= len(units):
        raise ValueError(f"`num_devices` must be between 1 and the number of units ({len(units)}); got {num_devices}.")
    names = list(device_names) if device_names is not None else default_device_names(num_devices)
    if len(names) != num_devices:
        raise ValueError(f"`device_names` must name {num_devices} devices (`num_devices`); got {names!r}.")
    if link_gb_per_s is not None and not link_gb_per_s > 0:
        raise ValueError(f"`link_gb_per_s` must be None or positive; got {link_gb_per_s!r}.")
    stages, activation_shapes, _ = build_stages(units, frame_shape, mode, fusion, shortcut)
    cuts = [] if link_gb_per_s is None else cut_times(activation_shapes, stages[0].compute_dtype, mode, batch_size,
                                                      link_gb_per_s)
    return grouped(unit_times(stages, activation_shapes, frame_shape, mode, batch_size, repeats), names, cuts)


def grouped(unit_ms: Sequence[float], names: Sequence[str], cut_ms: Sequence[float] = ()) -> Balance:
    """The `Balance` of units with times `unit_ms` over the devices `names` (one group each).

    `cut_ms`: per unit but the last, what a cut after it costs per step (empty: nothing).
    """
    groups = partition(unit_ms, len(names), list(cut_ms) or None)
    ends = list(cut_ms or [0.0] * (len(unit_ms) - 1)) + [0.0]
    group_ms = [sum(unit_ms[k] for k in group) + ends[group[-1]] for group in groups]
    devices = [names[g] for g, group in enumerate(groups) for _ in group]
    return Balance(devices=devices, groups=groups, unit_ms=list(unit_ms), group_ms=group_ms,
                   ideal_speedup=sum(unit_ms) / max(group_ms), cut_ms=list(cut_ms))

