"""Clip operations on synthetic clips whose pixels encode (frame, row, column)."""

import numpy as np
import pytest
import tensorflow as tf

from sideways_tf.data import clip_ops

pytestmark = pytest.mark.backend_independent("tf.data and tfds only")


def _coded_clip(t=6, h=8, w=10):
    """uint8 [T, H, W, 3]: channel 0 = frame index, 1 = row, 2 = column."""
    grid = np.stack(np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij"), -1)
    return tf.constant(grid.astype(np.uint8))


def test_stride_picks_every_kth_frame():
    indices = clip_ops.sample_indices(100, 8, stride=3, training=False)
    np.testing.assert_array_equal(np.diff(indices.numpy()), 3)
    assert indices[0] == (100 - 22) // 2  # the centre of a span of 22 frames
    random = clip_ops.sample_indices(100, 8, stride=3, training=True, seed=tf.constant([1, 2]))
    np.testing.assert_array_equal(np.diff(random.numpy()), 3)
    assert 0 <= random[0] <= 100 - 22


def test_torus_padding_order():
    np.testing.assert_array_equal(clip_ops.sample_indices(5, 8, training=False), [0, 1, 2, 3, 4, 0, 1, 2])
    wrapped = clip_ops.sample_indices(5, 8, training=True, seed=tf.constant([3, 4])).numpy()
    np.testing.assert_array_equal(wrapped, (wrapped[0] + np.arange(8)) % 5)


def test_flip_is_the_same_for_every_frame():
    clip = _coded_clip()
    flipped_seen = set()
    for seed in range(8):
        out = clip_ops.random_flip_left_right(clip, tf.constant([seed, 0])).numpy()
        columns = out[:, 0, :, 2]  # [T, W]
        assert all((columns[t] == columns[0]).all() for t in range(len(columns)))
        flipped_seen.add(columns[0, 0] == 9)
    assert flipped_seen == {True, False}


def test_crops():
    clip = _coded_clip(h=8, w=10)
    center = clip_ops.center_crop(clip, 4).numpy()
    np.testing.assert_array_equal(center[0, :, 0, 1], [2, 3, 4, 5])
    np.testing.assert_array_equal(center[0, 0, :, 2], [3, 4, 5, 6])
    np.testing.assert_array_equal(center, clip_ops.center_crop(clip, 4).numpy())
    crop = clip_ops.random_crop(clip, 4, tf.constant([5, 6])).numpy()
    top, left = crop[0, 0, 0, 1], crop[0, 0, 0, 2]
    for t in range(crop.shape[0]):  # the same window in every frame
        assert crop[t, 0, 0, 1] == top and crop[t, 0, 0, 2] == left


def test_resize_smallest_side_and_normalize():
    clip = tf.zeros((2, 60, 90, 3), tf.uint8)
    assert clip_ops.resize_smallest_side(clip, 30).shape == (2, 30, 45, 3)
    assert clip_ops.resize_smallest_side(clip, 30).dtype == tf.uint8
    np.testing.assert_allclose(clip_ops.normalize(tf.constant([0, 255], tf.uint8)), [-1.0, 1.0])


def test_future_targets_are_aligned():
    clip = _coded_clip(t=12)
    inputs, targets = clip_ops.future_targets(clip, 4)
    assert inputs.shape[0] == targets.shape[0] == 8
    np.testing.assert_array_equal(targets[..., 0].numpy()[:, 0, 0], inputs[..., 0].numpy()[:, 0, 0] + 4)


def _batch(b=3, t=6):
    frames = np.zeros((b, t, 2, 2, 1), np.int32)
    for i in range(b):
        frames[i, :, ..., 0] = (100 * i + np.arange(t))[:, None, None]  # clip i, frame t -> 100 i + t
    return tf.constant(frames), tf.constant([7, 8, 9])


def test_montage_concat_labels():
    videos, labels = _batch()
    out, frame_labels = clip_ops.montage_concat(videos, labels, 2)
    np.testing.assert_array_equal(out[0, :, 0, 0, 0], [0, 1, 2, 100, 101, 102])
    np.testing.assert_array_equal(frame_labels[0], [7, 7, 7, 8, 8, 8])
    np.testing.assert_array_equal(frame_labels[2], [9, 9, 9, 7, 7, 7])


def test_interleave_frames_labels():
    videos, labels = _batch()
    out, frame_labels = clip_ops.interleave_frames(videos, labels, 3)
    np.testing.assert_array_equal(out[0, :, 0, 0, 0], [0, 100, 200, 1, 101, 201])
    np.testing.assert_array_equal(frame_labels[0], [7, 8, 9, 7, 8, 9])


def test_bad_arguments():
    with pytest.raises(ValueError, match="`num_frames` and `stride` must be positive"):
        clip_ops.sample_indices(10, 0)
