"""A depth-parallel clip on the timeline: each device's kernels and each worker's step calls and copies.

    python -m benchmarks.frame_timeline [--model vgg8|vgg16|resnet50] [--mode sideways] [--batch 8]
        [--frames 32] [--resolution 112] [--devices 2] [--png PATH] [--host_devices N]

Units over `--devices` devices on per-device programs (JAX), grouped by `sw.parallel.balance`.
One clip's gradients are run twice to compile and warm up, then once under JAX's profiler (host
tracer only, no Python tracer). From the profile: per device, the time its kernels ran (the union
of their intervals) against the clip; per worker (one per device group), its step calls in host
time, and inside them XLA re-recording the step's CUDA graph (`command_buffer::update`) and
launching it (`cuGraphLaunch`), and its copies to other devices (`device_put`). A device busy far
less than the clip while its worker's calls last about as long as its kernels says the host's
launches, not the devices, bound the clip (`benchmarks/README.md`). Prints JSON and a table; with
`--png`, draws a few frames from the middle of the clip.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import statistics
import tempfile
from typing import Iterable, Optional

STEP_CALL = "PjitFunction(step)"
GRAPH_UPDATE = "command_buffer::update"
GRAPH_LAUNCH = "cuGraphLaunch"
COPY = "batched_copy_array_to_devices_with_sharding"
MERGE_GAP_US = 40.0  # kernels closer than this are drawn as one busy interval


def union(intervals: Iterable[tuple], gap: float = 0.0) -> list:
    """Merged `[start, end]` intervals (microseconds), joining those less than `gap` apart."""
    merged: list = []
    for start, end in sorted(intervals):
        if merged and start - merged[-1][1] <= gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def lanes(trace_events: list) -> dict:
    """The profile's complete events by lane.

    Args:
      trace_events: the `traceEvents` of a Chrome/Perfetto trace (`ph` "M" names processes and
        threads; `ph` "X" events have `ts` and `dur` in microseconds).

    Returns:
      `{"devices": {name: {"kernels": [(start, end)], "copies": [(start, end)]}},
        "workers": [{"calls": [...], "updates": [...], "launches": [...], "copies": [...]}]}`:
      a device per `/device:` process (streams named Memcpy count as copies); a worker per host
      thread that called a group's step, in the order of their first call.
    """
    processes, threads = {}, {}
    for e in trace_events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            processes[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e["pid"], e["tid"])] = e["args"]["name"]
    devices: dict = collections.defaultdict(lambda: {"kernels": [], "copies": []})
    host: dict = collections.defaultdict(lambda: {"calls": [], "updates": [], "launches": [], "copies": []})
    for e in trace_events:
        if e.get("ph") != "X":
            continue
        span = (float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)))
        process = processes.get(e["pid"], "")
        if "/device:" in process:
            kind = "copies" if "memcpy" in threads.get((e["pid"], e["tid"]), "").lower() else "kernels"
            devices[process][kind].append(span)
            continue
        name, lane = e.get("name", ""), host[(e["pid"], e["tid"])]
        if name == STEP_CALL:
            lane["calls"].append(span)
        elif name == GRAPH_UPDATE:
            lane["updates"].append(span)
        elif name.startswith(GRAPH_LAUNCH):
            lane["launches"].append(span)
        elif name == COPY:
            lane["copies"].append(span)
    workers = sorted((lane for lane in host.values() if lane["calls"]), key=lambda lane: min(lane["calls"]))
    for lane in workers:  # nested events of one call are reported once
        for kind in lane:
            lane[kind] = [tuple(i) for i in union(lane[kind])]
    return {"devices": dict(sorted(devices.items())), "workers": workers}


def _median_ms(spans: list) -> float:
    return round(statistics.median(end - start for start, end in spans) / 1e3, 3) if spans else 0.0


def summary(found: dict, frames: int) -> dict:
    """Per device and per worker, what `lanes` found, in milliseconds per clip and per frame."""
    starts = [s for w in found["workers"] for s, _ in w["calls"]]
    ends = [e for d in found["devices"].values() for _, e in d["kernels"]] + [
        e for w in found["workers"] for _, e in w["calls"]]
    if not starts or not ends:
        raise ValueError("the profile holds no step call of a device group (was the clip run on per-device "
                         "programs, with JAX's host tracer on?)")
    clip_us = max(ends) - min(starts)
    result = {"clip_ms": round(clip_us / 1e3, 3), "ms_per_frame": round(clip_us / 1e3 / frames, 3)}
    for name, device in found["devices"].items():
        busy = sum(end - start for start, end in union(device["kernels"]))
        result[f"{name}_busy_ms_per_frame"] = round(busy / 1e3 / frames, 3)
        result[f"{name}_busy_of_clip"] = round(busy / clip_us, 3)
    for g, worker in enumerate(found["workers"]):
        result[f"worker{g}_call_ms"] = _median_ms(worker["calls"])
        result[f"worker{g}_graph_update_ms"] = _median_ms(worker["updates"])
        result[f"worker{g}_graph_launch_ms"] = _median_ms(worker["launches"])
        result[f"worker{g}_copy_ms"] = _median_ms(worker["copies"])
    return result


def plot(path: str, found: dict, window: tuple, title: str = "") -> None:
    """Devices' kernels and copies, workers' calls (graph update and launch inside) and copies, in `window` (us)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start, end = window
    rows = [(name, [("kernels", d["kernels"], "tab:green"), ("copies", d["copies"], "tab:purple")])
            for name, d in found["devices"].items()]
    rows += [(f"worker {g}", [("step call", w["calls"], "tab:gray"), ("graph update", w["updates"], "tab:orange"),
                              ("graph launch", w["launches"], "tab:red"), ("device_put", w["copies"], "tab:blue")])
             for g, w in enumerate(found["workers"])]
    figure, axes = plt.subplots(figsize=(11, 0.6 * len(rows) + 1.4))
    labelled = set()
    for y, (_, parts) in enumerate(rows):
        for label, spans, color in parts:
            merged = union(spans, MERGE_GAP_US if label == "kernels" else 0)
            bars = [((s - start) / 1e3, (e - s) / 1e3) for s, e in merged if e > start and s < end]
            axes.broken_barh(bars, (y - 0.35, 0.7), color=color, label=None if label in labelled else label)
            labelled.add(label)
    axes.set_yticks(range(len(rows)), [name for name, _ in rows])
    axes.set_xlim(0, (end - start) / 1e3)
    axes.set_xlabel("ms")
    axes.invert_yaxis()
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=6, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def middle_window(found: dict, frames: int, ms_per_frame: float) -> tuple:
    """`frames` frames' worth of microseconds from the middle step call of the first worker."""
    calls = found["workers"][0]["calls"]
    start = calls[len(calls) // 2][0]
    return start, start + frames * ms_per_frame * 1e3


def _profile(function, folder: str) -> list:
    """`function()` under JAX's profiler (host tracer, no Python tracer); the trace's events."""
    import jax

    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0
    options.host_tracer_level = 2
    with jax.profiler.trace(folder, create_perfetto_trace=True, profiler_options=options):
        function()
    path = glob.glob(os.path.join(folder, "**", "*.json.gz"), recursive=True)[0]
    with gzip.open(path) as f:
        trace = json.load(f)
    return trace["traceEvents"] if isinstance(trace, dict) else trace


def main(argv: Optional[list] = None) -> None:
    os.environ["KERAS_BACKEND"] = "jax"
    from benchmarks.depth_parallel import (  # sets XLA_FLAGS from the flags before JAX starts
        clip_and_plan,
        values,
    )
    from benchmarks.networks import NETWORKS, compiled_network

    # isort: split
    import jax

    from benchmarks.common import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg8", choices=list(NETWORKS))
    parser.add_argument("--mode", default="sideways", choices=["sideways", "skip_sideways", "fa_skip_sideways"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--window_frames", type=int, default=4, help="frames drawn in the PNG")
    parser.add_argument("--png", help="where to draw the middle of the clip")
    parser.add_argument("--host_devices", type=int, default=0, help="split the CPU into this many XLA devices")
    parser.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS before JAX starts")
    args = parser.parse_args(argv)
    if len(jax.devices()) < args.devices:
        parser.error(f"--devices {args.devices}: JAX has {len(jax.devices())} devices ({jax.devices()}).")
    video, labels, plan = clip_and_plan(args.model, args.mode, args.batch, args.frames, args.resolution, args.devices)
    model = compiled_network(args.model, args.mode, args.resolution, plan.devices)
    model.build(video.shape)
    function = model.gradient_function()
    current = values(model)

    def clip():
        return jax.block_until_ready(function(*current, video, labels, None))

    clip()
    clip()
    with tempfile.TemporaryDirectory() as folder:
        found = lanes(_profile(clip, folder))
    row = {"model": args.model, "mode": args.mode, "B": args.batch, "T": args.frames, "res": args.resolution,
           "groups": [list(g) for g in plan.groups], **summary(found, args.frames)}
    report("frame_timeline", [row], list(row), {"devices": str(jax.devices()[:args.devices]),
                                                 "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")})
    if args.png:
        title = (f"{args.model} {args.mode} at {args.resolution}x{args.resolution}, B = {args.batch}, groups "
                 f"{row['groups']}: {row['ms_per_frame']} ms per frame")
        plot(args.png, found, middle_window(found, args.window_frames, row["ms_per_frame"]), title)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
