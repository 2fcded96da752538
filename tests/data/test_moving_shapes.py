"""Moving shapes: deterministic; motion needs several frames, appearance one."""

import keras
import numpy as np
import pytest

from sideways_tf.data import moving_shapes
from sideways_tf.data.moving_shapes import NUM_CLASSES

pytestmark = pytest.mark.backend_independent("tf.data and tfds only")


def _arrays(split, label_set, n, frames=8, resolution=32, seed=0):
    ds = moving_shapes(split, label_set=label_set, num_examples=n, num_frames=frames, resolution=resolution,
                       seed=seed)
    videos, labels = zip(*[(e["video"].numpy(), int(e["label"])) for e in ds], strict=True)
    return np.stack(videos), np.array(labels)


def test_deterministic_for_a_seed():
    a, la = _arrays("train", "motion", 4)
    b, lb = _arrays("train", "motion", 4)
    c, _ = _arrays("train", "motion", 4, seed=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)
    test, _ = _arrays("test", "motion", 4)
    assert not np.array_equal(a, test)


def _frame_classifier_accuracy(label_set, num_classes):
    """Trains a per-frame CNN on single frames and returns its held-out accuracy."""
    train_v, train_y = _arrays("train", label_set, 384)
    test_v, test_y = _arrays("test", label_set, 128)
    frames = train_v.reshape(-1, 32, 32, 3).astype("float32") / 255.0
    frame_labels = np.repeat(train_y, train_v.shape[1])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.GlobalMaxPooling2D(),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(num_classes)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(frames, frame_labels, epochs=4, batch_size=64, verbose=0)
    test_frames = test_v.reshape(-1, 32, 32, 3).astype("float32") / 255.0
    return model.evaluate(test_frames, np.repeat(test_y, test_v.shape[1]), verbose=0)[1]


@pytest.mark.parametrize("label_set, num_classes, chance", [("appearance", 4, 0.25), ("motion", 8, 0.125)])
def test_single_frames_reveal_appearance_not_motion(label_set, num_classes, chance):
    accuracy = _frame_classifier_accuracy(label_set, num_classes)
    if label_set == "appearance":
        assert accuracy > 0.8
    else:
        assert accuracy < chance + 0.08


def test_shape_and_direction_combines_the_shape_and_the_motions_direction():
    video, shape = _arrays("train", "appearance", 24)
    same, motion = _arrays("train", "motion", 24)
    _, both = _arrays("train", "shape_and_direction", 24)
    np.testing.assert_array_equal(video, same)
    np.testing.assert_array_equal(both, shape * 4 + motion // 2)
    assert NUM_CLASSES["shape_and_direction"] == 16 and both.max() < 16


def test_bad_arguments():
    with pytest.raises(ValueError, match="`label_set`"):
        moving_shapes("train", label_set="colour")
    with pytest.raises(ValueError, match="`split`"):
        moving_shapes("dev")


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_examples=0), r"`num_examples` must be a positive int .*got 0"),
    (dict(num_examples=-3), r"`num_examples` must be a positive int .*got -3"),
    (dict(num_frames=0), r"`num_frames` must be a positive int; got 0"),
    (dict(resolution=2.5), r"`resolution` must be a positive int; got 2.5"),
])
def test_sizes_that_give_nothing_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        moving_shapes("train", **kwargs)


@pytest.mark.parametrize("cache_bytes, renders", [(None, 4), (0, 8)])
def test_small_splits_are_rendered_once_not_every_epoch(monkeypatch, cache_bytes, renders):
    import tensorflow as tf

    from sideways_tf.data import loading

    calls = tf.Variable(0)
    render = loading.moving_shapes

    def counted(*args, **kwargs):
        return render(*args, **kwargs).map(lambda example: (calls.assign_add(1), example)[1])

    monkeypatch.setattr(loading, "moving_shapes", counted)
    if cache_bytes is not None:  # a split over the size kept in memory is rendered again each epoch
        monkeypatch.setattr(loading, "CACHE_BYTES", cache_bytes)
    dataset = loading.load("moving_shapes", "train", num_frames=4, resolution=8, batch_size=2, num_examples=4,
                           training=True, seed=0)
    epochs = [[clip.numpy() for clip, _ in dataset] for _ in range(2)]
    assert int(calls.numpy()) == renders
    assert len(epochs[0]) == len(epochs[1]) == 2
