"""Space-(time-)to-depth: exact round trips, agreement with a numpy reference, bad input."""

import keras
import numpy as np
import pytest

from sideways_tf.layers import DepthToSpace, DepthToSpaceTime, SpaceTimeToDepth, SpaceToDepth
from tests.helpers import np_space_to_depth, random_clip


@pytest.mark.parametrize("block", [2, 4])
def test_space_to_depth_matches_numpy_and_round_trips(block):
    x = random_clip((2, 8, 12, 3))
    y = SpaceToDepth(block)(x)
    np.testing.assert_array_equal(y, np_space_to_depth(x, block))
    np.testing.assert_array_equal(DepthToSpace(block)(y), x)


def test_space_time_to_depth_round_trips_and_reduces_to_space_to_depth():
    video = random_clip((2, 6, 8, 4, 3))
    packed = SpaceTimeToDepth(2, 2)(video)
    assert packed.shape == (2, 3, 4, 2, 24)
    np.testing.assert_array_equal(DepthToSpaceTime(2, 2)(packed), video)
    per_frame = SpaceTimeToDepth(1, 2)(video)
    for t in range(6):
        np.testing.assert_array_equal(per_frame[:, t], np_space_to_depth(video[:, t], 2))
    # Time blocks: frame 2k's pixels come first in the channels, then frame 2k+1's.
    np.testing.assert_array_equal(packed[:, 1, ..., :12], np_space_to_depth(video[:, 2], 2))
    np.testing.assert_array_equal(packed[:, 1, ..., 12:], np_space_to_depth(video[:, 3], 2))


def test_errors_and_config():
    with pytest.raises(ValueError, match="`block_size` must be a positive integer"):
        SpaceToDepth(0)
    with pytest.raises(ValueError, match="not a multiple of 2"):
        SpaceToDepth(2)(np.zeros((1, 5, 4, 3), "float32"))
    layer = SpaceTimeToDepth(2, 4)
    clone = SpaceTimeToDepth.from_config(layer.get_config())
    assert (clone.time_block, clone.space_block) == (2, 4)
    assert keras.saving.get_registered_object("sideways_tf>SpaceToDepth") is SpaceToDepth
