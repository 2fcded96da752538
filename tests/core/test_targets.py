"""Reading labels as per clip or per frame, and pairing them with the valid predictions."""

import numpy as np
from keras import ops

from sideways_tf.core import targets


def test_is_per_frame():
    out = (None, 5)
    assert not targets.is_per_frame((4,), out, 9)             # sparse per clip
    assert not targets.is_per_frame((4, 5), out, 9)           # one-hot per clip
    assert targets.is_per_frame((4, 9), out, 9)               # sparse per frame
    assert targets.is_per_frame((4, 9, 5), out, 9)            # one-hot per frame
    assert not targets.is_per_frame((4, 5), out, 5)           # ambiguous, float: one-hot per clip
    assert targets.is_per_frame((4, 5), out, 5, integer=True)  # ambiguous, integer: sparse per frame
    assert targets.is_per_frame((4, 9, 8, 8, 3), (None, 8, 8, 3), 9)  # frame prediction


def test_flatten_steps_repeats_clip_labels_and_trims_frame_labels():
    outputs = ops.reshape(ops.arange(2 * 3 * 1, dtype="float32"), (2, 3, 1))  # B=2, T'=3
    labels, weights = ops.convert_to_tensor([7, 8]), ops.convert_to_tensor([1.0, 0.5])
    y, pred, w = targets.flatten_steps(outputs, labels, weights, False, False)
    np.testing.assert_array_equal(y, [7, 7, 7, 8, 8, 8])
    np.testing.assert_array_equal(w, [1, 1, 1, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(pred[:, 0], [0, 1, 2, 3, 4, 5])
    frame_labels = ops.convert_to_tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])  # T=5: the first T' frames count
    y, _, _ = targets.flatten_steps(outputs, frame_labels, None, True, False)
    np.testing.assert_array_equal(y, [1, 2, 3, 6, 7, 8])


def test_at_frame():
    labels = ops.convert_to_tensor([[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(targets.at_frame(labels, 2, True), [3, 6])
    np.testing.assert_array_equal(targets.at_frame(labels, 2, False), labels)
    assert targets.at_frame(None, 0, True) is None
