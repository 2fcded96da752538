"""Online learning and inference on one stream: frames per second, an update after every frame.

    python -m benchmarks.streaming [--backend tensorflow|jax] [--model simple_cnn] [--size 112] [--seconds 10]
        [--png PATH]

Learning (`task` "learn"): Simple-CNN (10 classes, per-frame labels; or another network of
`benchmarks.networks` with `--model`) at `--size`x`--size`, B = 1, `update_every=1`, a stateful
model fed by `train_on_batch`: per rule, frames/s when frames come one at a time (`chunk 1`: the
latency from a frame's arrival to the weights it updates is one call) and in chunks of 25 (a
second of 25 fps video caught up at once; the same updates, fewer calls). `task` "fit": one
frame a batch from a Python generator through one `fit` (a live source's loop left to Keras).
Inference (`task` "infer"): `stream_step` frame by frame, each prediction read back to the host
before the next frame (a live consumer's latency). The target is real time for 25 fps video.
Configurations are interleaved over rounds and the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import add_backend_flag, report

COLUMNS = ["backend", "model", "task", "mode", "chunk", "frames_per_s", "ms_per_call", "real_time_25fps"]

import keras  # noqa: E402  (after benchmarks.common set the backend)
import numpy as np  # noqa: E402

import sideways_tf as sw  # noqa: E402
from benchmarks.networks import NETWORKS, compiled_network  # noqa: E402


def stream_model(name: str, mode: str, size: int, learning: bool) -> sw.SidewaysModel:
    """Network `name` (`benchmarks.networks`) in `mode`, built for one stream of `size`x`size` frames: stateful
    with an update every frame (`learning`), else for `stream_step`."""
    options = {"update_every": 1, "stateful": True} if learning else {}
    model = compiled_network(name, mode, size, learning_rate=1e-3, **options)
    model.build((1, None, size, size, 3))
    return model


def _runner(model, task: str, chunk: int, size: int):
    """`run(n)` feeding `n` chunks of `chunk` frames to `model`: a `train_on_batch` each ("learn"), one `fit` over
    a generator of them ("fit", as a live source would feed it) or `stream_step`s ("infer", each prediction
    read back)."""
    rng = np.random.default_rng(0)
    clip = rng.uniform(size=(1, chunk, size, size, 3)).astype("float32")
    labels = np.zeros((1, chunk), "int32")
    if task == "learn":
        def learn(n):
            for _ in range(n):
                model.train_on_batch(clip, labels)

        return learn
    if task == "fit":
        return lambda n: model.fit(((clip, labels) for _ in range(n)), steps_per_epoch=n, verbose=0)
    state = {"now": model.init_states(1)}

    def infer(n):
        for _ in range(n):
            for s in range(chunk):
                prediction, state["now"] = model.stream_step(clip[:, s], state["now"])
                np.asarray(prediction)

    return infer


def measure(args) -> list[dict]:
    configs = [(task, mode, chunk) for task in args.tasks for mode in args.modes
               for chunk in ((1, 25) if task == "learn" else (1,))]
    runs = {}
    for task, mode, chunk in configs:
        run = _runner(stream_model(args.model, mode, args.size, task != "infer"), task, chunk, args.size)
        run(2)  # compile, warm up
        runs[(task, mode, chunk)] = run
    seconds_per_call = {key: [] for key in configs}
    for _ in range(args.rounds):
        for key in configs:
            repeats = max(2, int(args.seconds * 25 / key[2] / args.rounds))
            start = time.perf_counter()
            runs[key](repeats)
            seconds_per_call[key].append((time.perf_counter() - start) / repeats)
    rows = []
    for task, mode, chunk in configs:
        per_call = statistics.median(seconds_per_call[(task, mode, chunk)])
        fps = chunk / per_call
        rows.append({"backend": keras.backend.backend(), "model": args.model, "task": task, "mode": mode,
                     "chunk": chunk, "frames_per_s": fps, "ms_per_call": per_call * 1e3,
                     "real_time_25fps": fps >= 25.0})
    return rows


def device_name() -> str:
    """The device the backend runs on, for the plot's title ("CPU", or e.g. "NVIDIA H200")."""
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return "CPU" if device.platform == "cpu" else device.device_kind
    import tensorflow as tf

    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


def plot(path: str, rows: list[dict], device: str = "CPU") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axis = plt.subplots(figsize=(max(8, 0.9 * len(rows)), 4.2))
    calls = {"learn": "train_on\n_batch", "fit": "fit,\ngenerator", "infer": "stream\n_step"}
    labels = [f"{calls[r['task']]}\n" + r["mode"].replace("skip_", "skip-\n") + f"\n{r['chunk']} a call" for r in rows]
    colors = [{"infer": "C2", "fit": "C3"}.get(r["task"], "C0" if r["chunk"] == 1 else "C1") for r in rows]
    axis.bar(labels, [r["frames_per_s"] for r in rows], color=colors)
    axis.axhline(25, color="k", linestyle="--", label="25 fps (real time)")
    axis.set_ylabel("frames per second (log)")
    axis.set_yscale("log")
    axis.set_ylim(bottom=10)
    axis.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axis.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.set_title(f"one stream, {rows[0]['model']} ({rows[0]['backend']}, {device}): learning with an update "
                   "every frame, and inference", fontsize=10)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backend_flag(parser)
    parser.add_argument("--model", default="simple_cnn", choices=list(NETWORKS))
    parser.add_argument("--tasks", nargs="+", default=["learn", "fit", "infer"], choices=["learn", "fit", "infer"])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--seconds", type=float, default=10.0, help="video seconds per configuration")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["sideways", "skip_sideways", "bp"], choices=sw.MODES)
    parser.add_argument("--png", help="also save a bar chart here")
    args = parser.parse_args()
    rows = measure(args)
    summary = {f"{r['task']} {r['mode']} chunk {r['chunk']}: x real time": r["frames_per_s"] / 25.0 for r in rows}
    by = {(r["task"], r["mode"], r["chunk"]): r["frames_per_s"] for r in rows}
    if "bp" in args.modes:
        for task in args.tasks:
            for mode in args.modes:
                if mode != "bp":
                    summary[f"{task} {mode} / bp (chunk 1)"] = by[(task, mode, 1)] / by[(task, "bp", 1)]
    report("streaming", rows, COLUMNS, summary)
    if args.png:
        plot(args.png, rows, device_name())
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
