"""`sideways-stream`: learn online from a video replayed in real time (or a camera), and watch it learn.

    sideways-stream --video clip.mp4 [--mode sideways] [--task autoencode|predict --offset 2]
        [--fps 25] [--seconds 60] [--size 64] [--out DIR]
    sideways-stream --camera 0 ...

The video is replayed at `--fps` as a live camera would deliver it (frames that arrive while the
learner is busy are dropped once its backlog is full; backprop, which blocks, only ever takes the
newest frame). The model (the Sideways paper's auto-encoder) updates after every frame and prints,
once a second, the online loss, the frames learned per second and the frames dropped. Every
`--png_every` seconds it saves a PNG of the input, the target and the model's output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Optional, Sequence

import numpy as np

MODES = ("sideways", "skip_sideways", "fa_skip_sideways", "bp")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, except where there is none to show (the help then says what happens)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sideways-stream", description=__doc__.split("\n\n")[0],
        epilog="example: sideways-stream --video clip.mp4 --seconds 30 --out /tmp/stream", formatter_class=_Help)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="a video file, replayed in a loop (needs PyAV: sideways_tf[video])")
    source.add_argument("--camera", type=int, help="a camera index (needs opencv-python-headless)")
    parser.add_argument("--mode", default="sideways", choices=MODES, help="the training rule")
    parser.add_argument("--task", default="autoencode", choices=("autoencode", "predict"),
                        help="reconstruct frame t, or predict frame t + offset")
    parser.add_argument("--offset", type=int, default=2, help="k of --task predict")
    parser.add_argument("--fps", type=float, default=25.0, help="frames per second of the replay")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to learn")
    parser.add_argument("--size", type=int, default=64, help="frames are resized to size x size (a multiple of 8)")
    parser.add_argument("--width", type=float, default=1.0, help="scales the model's hidden widths")
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--backlog", type=float, default=2.0,
                        help="seconds of frames kept while the learner is busy (Sideways modes)")
    parser.add_argument("--png_every", type=float, default=5.0, help="seconds between PNG snapshots (0: none)")
    parser.add_argument("--out", help="where PNGs and stream.json go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    if args.size % 8:
        parser.error(f"--size must be a multiple of 8; got {args.size}")
    for name in ("fps", "seconds", "learning_rate"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive; got {getattr(args, name)}")
    if args.task == "predict" and args.offset < 1:
        parser.error(f"--offset must be >= 1 with --task predict; got {args.offset}")
    return args


def snapshot(path: str, frame: np.ndarray, target: np.ndarray, output: np.ndarray, title: str) -> None:
    """Saves input | target | output side by side as a PNG (needs matplotlib: sideways_tf[plots])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for axis, image, name in zip(axes, (frame, target, output), ("input", "target", "output"), strict=True):
        axis.imshow(np.clip(image, 0.0, 1.0))
        axis.set_title(name)
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _frames(args) -> np.ndarray:
    from sideways_tf.streaming import camera_frames, video_frames

    size = (args.size, args.size)
    if args.video is not None:
        if not os.path.isfile(args.video):
            raise ValueError(f"--video {args.video}: no such file.")
        return video_frames(args.video, size=size)
    # A camera is read into a short buffer first, then replayed like a file.
    frames = []
    for frame in camera_frames(args.camera, size=size):
        frames.append(frame)
        if len(frames) >= int(args.fps * 10):
            break
    return np.stack(frames)


def run(args: argparse.Namespace) -> dict:
    """Learns online for `args.seconds`; returns the summary written to `stream.json`."""
    from sideways_tf.core import schedule
    from sideways_tf.streaming.learner import OnlineLearner, autoencoder
    from sideways_tf.streaming.sources import RealTimeSource

    out = args.out or tempfile.mkdtemp(prefix="sideways_stream_")
    os.makedirs(out, exist_ok=True)
    frames = _frames(args)
    model = autoencoder(args.mode, frames.shape[1:], args.learning_rate, args.width)
    offset = args.offset if args.task == "predict" else 0
    learner = OnlineLearner(model, args.task, offset)
    depth = model.depth
    print(f"sideways-stream: {args.mode} trains the {depth}-unit auto-encoder online ({args.task}"
          f"{f', k={offset}' if offset else ''}) on {args.video or f'camera {args.camera}'} at "
          f"{args.fps:g} fps, {frames.shape[1]}x{frames.shape[2]}; PNGs in {out}", flush=True)
    learner.learn(frames[:1])  # compile before the clock starts
    model.reset_state()
    learner = OnlineLearner(model, args.task, offset)
    backlog = 1 if schedule.rule(args.mode, model.depth).synchronous else max(1, int(args.backlog * args.fps))
    source = RealTimeSource(frames, args.fps, loop=True, max_frames=backlog)
    start = time.monotonic()
    history, pngs = [], []
    try:
        _learn(args, source, learner, depth, offset, out, start, history, pngs)
        interrupted = False
    except KeyboardInterrupt:  # Ctrl-C: keep what was learned and measured
        interrupted = True
    summary = {"mode": args.mode, "task": args.task, "offset": offset, "fps": args.fps,
               "frames_learned": learner.frames_learned, "dropped": source.dropped, "history": history, "pngs": pngs,
               "interrupted": interrupted}
    with open(os.path.join(out, "stream.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"{'interrupted: ' if interrupted else ''}learned {learner.frames_learned} frames, dropped "
          f"{source.dropped}; {len(pngs)} PNGs and stream.json in {out}")
    return summary


def _learn(args, source, learner, depth: int, offset: int, out: str, start: float, history: list,
           pngs: list) -> None:
    """The real-time loop: learns each arrival until `args.seconds` have passed (appends to `history`, `pngs`)."""
    from sideways_tf.streaming.learner import to_float

    last_print = last_png = start
    recent, losses = [], []
    for arrival in source:
        now = time.monotonic()
        if now - start >= args.seconds:
            break
        loss = learner.learn(arrival.frames)
        if loss is not None:
            losses.append(loss)
        recent = (recent + list(arrival.frames))[-(depth + offset):]
        now = time.monotonic()
        if now - last_print >= 1.0:
            elapsed = now - start
            row = {"seconds": round(elapsed, 2), "frames_learned": learner.frames_learned,
                   "frames_per_s": learner.frames_learned / elapsed, "dropped": source.dropped,
                   "loss": float(np.mean(losses)) if losses else None}
            history.append(row)
            loss_text = "(pipeline filling)" if row["loss"] is None else f"{row['loss']:.5f}"
            print(f"t={elapsed:6.1f}s  learned {row['frames_learned']:6d} frames ({row['frames_per_s']:5.1f}/s)  "
                  f"dropped {row['dropped']:5d}  loss {loss_text}", flush=True)
            losses, last_print = [], now
        if args.png_every and now - last_png >= args.png_every and len(recent) >= depth + offset:
            window = np.stack(recent[-(depth + offset):])
            output = learner.reconstruct(window[:depth])
            path = os.path.join(out, f"snapshot_{len(pngs):04d}.png")
            snapshot(path, to_float(window[0]), to_float(window[offset]), output,
                     f"{args.mode}, t = {now - start:.0f} s, online loss {history[-1]['loss'] if history else 0:.4f}")
            pngs.append(path)
            last_png = now


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command; a missing or unreadable source is one `error:` line (exit 2), Ctrl-C before
    the learning starts exits 130 quietly (once it has started, `run` saves what it has)."""
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, ImportError, OSError) as error:
        print(f"sideways-stream: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sideways-stream: interrupted before learning started; nothing saved.", file=sys.stderr)
        return 130
    return 0


def run_main() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run_main()
