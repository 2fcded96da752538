"""Frame sources: a video (file or array) or a camera, replayed in real time at a fixed frame rate."""

from __future__ import annotations

import time
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

import numpy as np


def _resize(frames: np.ndarray, size: Optional[Sequence[int]]) -> np.ndarray:
    """`[N, H, W, C]` uint8 -> `[N, *size, C]` (bilinear; no change when `size` is None)."""
    if size is None or tuple(frames.shape[1:3]) == tuple(size):
        return frames
    from keras import ops

    resized = ops.image.resize(frames.astype("float32"), tuple(size), interpolation="bilinear")
    return np.clip(np.rint(np.asarray(resized)), 0, 255).astype("uint8")


def video_frames(path: str, size: Optional[Sequence[int]] = None, max_frames: Optional[int] = None) -> np.ndarray:
    """A video file's frames, uint8 `[N, H, W, 3]`, resized to `size` = (H, W) if given.

    Needs PyAV (`pip install "sideways_tf[video]"`).

    Raises:
      sideways_tf.video_io.VideoReadError: the file is missing or cannot be decoded.
    """
    from sideways_tf.video_io import read_video

    return _resize(read_video(path, max_frames=max_frames), size)


def camera_frames(index: int = 0, size: Optional[Sequence[int]] = None) -> Iterator[np.ndarray]:
    """Frames from camera `index` as they come, uint8 `[H, W, 3]` RGB (needs OpenCV: `opencv-python-headless`).

    Raises:
      ImportError: OpenCV is not installed.
      ValueError: the camera cannot be opened.
    """
    try:
        import cv2
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("--camera needs OpenCV: pip install opencv-python-headless") from error
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise ValueError(f"camera {index} cannot be opened (is there a camera at index {index}?).")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield _resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)[None], size)[0]
    finally:
        capture.release()


class Arrival(NamedTuple):
    """What a real-time source hands over.

    Attributes:
      index: the frame's index in the stream.
      frames: uint8 `[n, H, W, C]`, the newest frames that arrived since the previous call
        (1 <= n <= the source's `max_frames`).
      dropped: how many frames arrived since the previous call and were not handed over.
    """

    index: int
    frames: np.ndarray
    dropped: int


class RealTimeSource:
    """Replays frames at `fps` frames per second, as a camera would deliver them.

    Each `next()` waits for the next frame that has not been handed over yet. When the caller
    was busy for longer than a frame period, the frames that arrived meanwhile are handed over
    together, up to the newest `max_frames` of them; older ones are dropped (and counted), as a
    live camera's frames are lost when nobody reads them. `max_frames=1` is a learner that
    blocks and only ever sees the newest frame (backprop); a larger one lets a learner that can
    catch up (Sideways on a chunk) consume every frame.

    Args:
      frames: uint8 `[N, H, W, C]`, the video to replay.
      fps: the frame rate.
      loop: start again at the end (an endless stream); otherwise stop after N frames.
      max_frames: the most frames handed over at once.
      clock, sleep: the time functions (injectable for tests).
    """

    def __init__(self, frames: np.ndarray, fps: float, loop: bool = True, max_frames: int = 1,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if fps <= 0:
            raise ValueError(f"`fps` must be positive; got {fps}.")
        if max_frames < 1:
            raise ValueError(f"`max_frames` must be >= 1; got {max_frames}.")
        frames = np.asarray(frames)
        if frames.ndim != 4 or len(frames) == 0:
            raise ValueError(f"`frames` must be a non-empty [N, H, W, C] array; got shape {frames.shape}.")
        self.frames, self.fps, self.loop, self.max_frames = frames, float(fps), loop, max_frames
        self._clock, self._sleep = clock, sleep
        self._start: Optional[float] = None
        self._next = 0
        self.dropped = 0

    def __iter__(self) -> "RealTimeSource":
        return self

    def _frame(self, index: int) -> np.ndarray:
        return self.frames[index % len(self.frames)]

    def __next__(self) -> Arrival:
        if self._start is None:
            self._start = self._clock()
        if not self.loop and self._next >= len(self.frames):
            raise StopIteration
        arrived = int((self._clock() - self._start) * self.fps)  # frames 0 .. arrived have arrived
        if arrived < self._next:
            self._sleep((self._next - arrived) / self.fps)
            arrived = self._next
        if not self.loop:
            arrived = min(arrived, len(self.frames) - 1)
        first = max(self._next, arrived - self.max_frames + 1)
        dropped = first - self._next
        self.dropped += dropped
        self._next = arrived + 1
        return Arrival(arrived, np.stack([self._frame(i) for i in range(first, arrived + 1)]), dropped)
