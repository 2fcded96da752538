"""`masking=False`, the ablation of the papers' mask gamma: every step counts, the warm-up included."""

import keras
import numpy as np
import pytest

import sideways_tf as sw
from tests.helpers import assert_grads_close, compiled, dense_units, random_clip

T, B = 8, 2


def _no_bias_units(depth: int) -> list:
    """Dense units without biases: a zero-filled input gives a zero activation."""
    return [keras.layers.Dense(6, activation="tanh", use_bias=False) for _ in range(depth - 1)] + [
        keras.layers.Dense(3, use_bias=False)]


def _pseudo_gradients(make_units, mode: str, masking: bool, video, labels) -> list:
    keras.utils.set_random_seed(0)
    model = compiled(sw.SidewaysModel(make_units(), mode=mode, masking=masking))
    return [np.asarray(g) for g in model.pseudo_gradients(video, labels)]


@pytest.mark.parametrize("mode, depth", [("sideways", 1), ("bp", 3)])
def test_without_a_warm_up_masking_changes_nothing(mode, depth):
    video, labels = random_clip((B, T, 5)), np.array([0, 2])
    masked = _pseudo_gradients(lambda: dense_units(depth), mode, True, video, labels)
    assert_grads_close(_pseudo_gradients(lambda: dense_units(depth), mode, False, video, labels), masked)


def test_unmasked_steps_count_the_warm_up():
    depth = 3
    video, labels = random_clip((B, T, 5)), np.array([1, 2])
    masked = _pseudo_gradients(lambda: _no_bias_units(depth), "sideways", True, video, labels)
    unmasked = _pseudo_gradients(lambda: _no_bias_units(depth), "sideways", False, video, labels)
    # The top unit reads zeros for its first D - 1 steps, so those steps add nothing to its
    # kernel's sum: only the count changes (T steps against T - D + 1).
    np.testing.assert_allclose(unmasked[-1] * T, masked[-1] * (T - depth + 1), rtol=1e-4, atol=1e-6)
    # A lower unit also sums the messages its readers sent from the warm-up's zeros.
    assert not np.allclose(unmasked[0] * T, masked[0] * (T - 2 * depth + 2), rtol=1e-3, atol=1e-6)


def test_masking_is_checked_and_saved():
    with pytest.raises(ValueError, match=r"`masking` must be True or False; got 'no'"):
        sw.SidewaysModel(dense_units(2), masking="no")
    model = sw.SidewaysModel(dense_units(2), masking=False)
    assert sw.SidewaysModel.from_config(model.get_config()).masking is False
