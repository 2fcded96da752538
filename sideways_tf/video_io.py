"""Reading video files with PyAV (the optional `video` extra: `pip install "sideways_tf[video]"`)."""

from __future__ import annotations

from typing import Optional

import numpy as np


class VideoReadError(ValueError):
    """A video file that is missing, empty or cannot be decoded. The message names the file."""


def _import_av():
    try:
        import av
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('Reading video files needs PyAV: pip install "sideways_tf[video]"') from error
    return av


def read_video(path: str, max_frames: Optional[int] = None, smallest_side: Optional[int] = None) -> np.ndarray:
    """Decodes a video file's frames.

    Args:
      path: an mp4/avi/... file.
      max_frames: stop after this many frames (None: all).
      smallest_side: resize every frame so that its shorter side has this length (None: as is).

    Returns:
      uint8 `[N, H, W, 3]`, RGB.

    Raises:
      VideoReadError: the file is missing, unreadable or holds no video frames.
    """
    av = _import_av()
    frames = []
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoReadError(f"{path}: no video stream.")
            for frame in container.decode(video=0):
                if smallest_side is not None:
                    scale = smallest_side / min(frame.width, frame.height)
                    frame = frame.reformat(width=max(1, round(frame.width * scale)),
                                           height=max(1, round(frame.height * scale)))
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except VideoReadError:
        raise
    except (OSError, av.error.FFmpegError, ValueError) as error:
        raise VideoReadError(f"{path}: cannot decode ({error}).") from error
    if not frames:
        raise VideoReadError(f"{path}: no frames could be decoded.")
    return np.stack(frames)


def write_video(path: str, frames: np.ndarray, fps: int = 25) -> None:
    """Encodes frames as an MPEG-4 video file (PyAV's `mpeg4` codec, yuv420p).

    Args:
      path: the file to write (`.mp4`).
      frames: uint8 `[N, H, W, 3]`, RGB, with even H and W (yuv420p halves the chroma planes).
      fps: frames per second.

    Raises:
      ValueError: `frames` is not uint8 `[N, H, W, 3]` with N >= 1 and even H and W.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(f"`frames` must be uint8 [N, H, W, 3] with N >= 1; got {frames.dtype} {frames.shape}.")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"`frames` must have an even height and width (yuv420p); got {frames.shape[1:3]}.")
    av = _import_av()
    with av.open(path, mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
