"""`sideways-stream`: learn online from a video replayed in real time (or a camera), and watch it learn.

    sideways-stream --video clip.mp4 [--mode sideways] [--task autoencode|predict --offset 2]
        [--fps 25] [--seconds 60] [--size 64] [--out DIR]
    sideways-stream --camera 0 ...

The video is replayed at `--fps` as a live camera would deliver it (frames that arrive while the
learner is busy are dropped once its backlog is full; backprop, which blocks, only ever takes the
newest frame). The model (the Sideways paper's auto-encoder) updates after every frame and prints,
once a second, the online loss, the frames learned per second and the frames dropped. Every
`--png_every` seconds it saves a PNG of the input, the target and the model's output.

example: sideways-stream --video clip.mp4 --seconds 30 --out /tmp/stream
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import types
from typing import Optional, Sequence

import numpy as np

from sideways_tf.cli import common

MODES = ("sideways", "skip_sideways", "fa_skip_sideways", "bp")


COMMAND = "sideways-stream"


def _flags():
    """The command's flags, in a `FlagValues` of their own (so that parsing can run again in one process)."""
    from absl import flags

    values = flags.FlagValues()
    own = {"flag_values": values}
    flags.DEFINE_string("video", None, "a video file, replayed in a loop (needs PyAV: sideways_tf[video]); "
                        "this or --camera", **own)
    flags.DEFINE_integer("camera", None, "a camera index (needs opencv-python-headless); this or --video", **own)
    flags.DEFINE_enum("mode", "sideways", MODES, "the training rule", **own)
    flags.DEFINE_enum("task", "autoencode", ["autoencode", "predict"],
                      "reconstruct frame t, or predict frame t + offset", **own)
    flags.DEFINE_integer("offset", 2, "k of --task predict", **own)
    flags.DEFINE_float("fps", 25.0, "frames per second of the replay", **own)
    flags.DEFINE_float("seconds", 60.0, "how long to learn", **own)
    flags.DEFINE_integer("size", 64, "frames are resized to size x size (a multiple of 8)", **own)
    flags.DEFINE_float("width", 1.0, "scales the model's hidden widths", **own)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate", **own)
    flags.DEFINE_float("backlog", 2.0, "seconds of frames kept while the learner is busy (Sideways modes)", **own)
    flags.DEFINE_float("png_every", 5.0, "seconds between PNG snapshots (0: none)", **own)
    flags.DEFINE_string("out", None, "where PNGs and stream.json go (unset: a new temporary folder)", **own)
    return values


def parse_args(argv: Optional[Sequence[str]] = None) -> types.SimpleNamespace:
    """The command's arguments (`argv` without the program name; default: `sys.argv[1:]`).

    `-h`/`--help` prints the command's help (as the other commands do, `common.command_help`) and
    exits 0; a flag that is unknown, malformed or out of range is one `error:` line, exit 2.
    """
    from absl import flags

    values = _flags()
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in (*common.HELP_ARGS, "--helpfull") for arg in argv):
        print(common.command_help(__name__, values))
        sys.exit(0)
    try:
        rest = values([COMMAND, *argv])
    except flags.Error as error:
        common.fail(COMMAND, str(error))
    if len(rest) > 1:
        common.fail(COMMAND, f"unexpected arguments {rest[1:]}: every argument is a --flag.")
    args = types.SimpleNamespace(**{name: values[name].value for name in values})
    if (args.video is None) == (args.camera is None):
        common.fail(COMMAND, "give one source: --video FILE or --camera INDEX.")
    if args.size % 8:
        common.fail(COMMAND, f"--size must be a multiple of 8; got {args.size}")
    for name in ("fps", "seconds", "learning_rate"):
        if getattr(args, name) <= 0:
            common.fail(COMMAND, f"--{name} must be positive; got {getattr(args, name)}")
    if args.task == "predict" and args.offset < 1:
        common.fail(COMMAND, f"--offset must be >= 1 with --task predict; got {args.offset}")
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


def run(args: types.SimpleNamespace) -> dict:
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
    # Compile before the clock starts: a training step (a "predict" task learns frame t once frame
    # t + k has arrived, so it needs k + 1 frames) and, with snapshots, the inference they run.
    learner.learn(frames[:1 + offset])
    if args.png_every:
        learner.reconstruct(frames[:depth])
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
