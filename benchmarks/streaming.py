"""Online learning speed: frames per second learned from one stream with an update after every frame.

    python -m benchmarks.streaming [--backend tensorflow|jax] [--size 112] [--seconds 10] [--png PATH]

Simple-CNN (10 classes, per-frame labels) at `--size`x`--size`, B = 1, `update_every=1`, a
stateful model fed by `train_on_batch`: per rule, frames/s when frames come one at a time
(`chunk 1`: the latency from a frame's arrival to the weights it updates is one call) and in
chunks of 25 (a second of 25 fps video caught up at once; the same updates, fewer calls). The
target is real time for 25 fps video. Rules and chunkings are interleaved over rounds and the
median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import add_backend_flag, report

COLUMNS = ["backend", "mode", "chunk", "frames_per_s", "ms_per_call", "real_time_25fps"]

import keras  # noqa: E402  (after benchmarks.common set the backend)
import numpy as np  # noqa: E402

import sideways_tf as sw  # noqa: E402


def learner(mode: str, size: int):
    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(sw.models.simple_cnn(10), mode=mode, update_every=1, stateful=True)
    model.build((1, None, size, size, 3))
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def measure(args) -> list[dict]:
    configs = [(mode, chunk) for mode in args.modes for chunk in (1, 25)]
    clips = {chunk: np.random.default_rng(0).uniform(size=(1, chunk, args.size, args.size, 3)).astype("float32")
             for chunk in (1, 25)}
    labels = {chunk: np.zeros((1, chunk), "int32") for chunk in (1, 25)}
    models = {}
    for mode, chunk in configs:
        models[(mode, chunk)] = learner(mode, args.size)
        for _ in range(2):  # compile, warm up
            models[(mode, chunk)].train_on_batch(clips[chunk], labels[chunk])
    seconds_per_call = {key: [] for key in configs}
    for _ in range(args.rounds):
        for mode, chunk in configs:
            model, calls = models[(mode, chunk)], max(1, int(args.seconds * 25 / chunk / args.rounds))
            start = time.perf_counter()
            for _ in range(calls):
                model.train_on_batch(clips[chunk], labels[chunk])
            seconds_per_call[(mode, chunk)].append((time.perf_counter() - start) / calls)
    rows = []
    for mode, chunk in configs:
        per_call = statistics.median(seconds_per_call[(mode, chunk)])
        fps = chunk / per_call
        rows.append({"backend": keras.backend.backend(), "mode": mode, "chunk": chunk, "frames_per_s": fps,
                     "ms_per_call": per_call * 1e3, "real_time_25fps": fps >= 25.0})
    return rows


def plot(path: str, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3.8))
    labels = [r["mode"].replace("skip_", "skip-\n") + f"\nchunk {r['chunk']}" for r in rows]
    axis.bar(labels, [r["frames_per_s"] for r in rows], color=["C0" if r["chunk"] == 1 else "C1" for r in rows])
    axis.axhline(25, color="k", linestyle="--", label="25 fps (real time)")
    axis.set_ylabel("frames learned per second")
    axis.set_title(f"online learning, update every frame ({rows[0]['backend']}, CPU)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backend_flag(parser)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--seconds", type=float, default=10.0, help="video seconds per configuration")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["sideways", "skip_sideways", "bp"], choices=sw.MODES)
    parser.add_argument("--png", help="also save a bar chart here")
    args = parser.parse_args()
    rows = measure(args)
    summary = {f"{r['mode']} chunk {r['chunk']}: x real time": r["frames_per_s"] / 25.0 for r in rows}
    by = {(r["mode"], r["chunk"]): r["frames_per_s"] for r in rows}
    if "bp" in args.modes:
        for mode in args.modes:
            if mode != "bp":
                summary[f"{mode} / bp (chunk 1)"] = by[(mode, 1)] / by[("bp", 1)]
    report("streaming", rows, COLUMNS, summary)
    if args.png:
        plot(args.png, rows)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
