"""`sw.temporal_receptive_field`: one frame for Sideways and per-frame backprop, growing with depth
under Skip-Sideways' shortcuts (by one frame per two units), and its argument checks."""

import numpy as np
import pytest

import sideways_tf as sw
from tests.helpers import dense_units, random_clip

T = 12


def field(mode: str, depth: int) -> list:
    model = sw.SidewaysModel(dense_units(depth), mode=mode)
    clip = random_clip((2, T, 4))
    model.build(clip.shape)
    return sw.temporal_receptive_field(model, clip, batch_size=7)


@pytest.mark.parametrize("depth", [4, 6, 8])
def test_sideways_sees_one_frame_and_skip_sideways_half_its_depth(depth):
    latency = depth - 1
    assert field("sideways", depth) == [T - 1 - latency]
    assert field("bp", depth) == [T - 1]
    # The top unit at step t reads frames t - D + 1 .. t - D / 2 through the shortcuts of every
    # second unit: D / 2 consecutive frames, ending at Sideways' one.
    assert field("skip_sideways", depth) == list(range(T - depth, T - depth + depth // 2))


def test_a_constant_network_has_an_empty_field_and_arguments_are_checked():
    units = dense_units(3)
    model = sw.SidewaysModel(units, mode="sideways")
    clip = random_clip((1, T, 4))
    model.build(clip.shape)
    units[0].set_weights([np.zeros_like(w) for w in units[0].get_weights()])
    assert sw.temporal_receptive_field(model, clip) == []
    with pytest.raises(ValueError, match="`video` must be clips"):
        sw.temporal_receptive_field(model, clip[0, 0])
    with pytest.raises(ValueError, match="`step` must index the model's 10 predictions"):
        sw.temporal_receptive_field(model, clip, step=10)
    with pytest.raises(ValueError, match="`tolerance`"):
        sw.temporal_receptive_field(model, clip, tolerance=-1)
    with pytest.raises(ValueError, match="`batch_size`"):
        sw.temporal_receptive_field(model, clip, batch_size=0)
