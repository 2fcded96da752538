"""`load`: UCF101 under tfds mock data into a training step; moving shapes; bad input."""

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

import sideways_tf as sw
from sideways_tf import data


def test_ucf101_mock_into_one_fit_step(tmp_path):
    # Mock clips are random and can be shorter than T: loop padding must cover them.
    with tfds.testing.mock_data(num_examples=4):
        train = data.load("ucf101", "train", num_frames=15, resolution=64, batch_size=2, seed=0)
        videos, labels = next(iter(train))
    assert videos.shape == (2, 15, 64, 64, 3) and labels.shape == (2,)
    assert -1.0 <= float(np.min(videos)) and float(np.max(videos)) <= 1.0
    model = sw.SidewaysModel(sw.models.vgg8(101, width=1 / 16), mode="skip_sideways")
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logs = model.fit(videos, labels, verbose=0).history
    assert np.isfinite(logs["loss"][0])


@pytest.mark.backend_independent("tf.data only")
def test_ucf101_eval_and_whole_videos():
    with tfds.testing.mock_data(num_examples=3):
        clip = next(iter(data.load("ucf101", "test", num_frames=8, resolution=64, batch_size=3, training=False)))
        videos = list(data.load("ucf101", "test", num_frames=8, resolution=64, batch_size=1, training=False,
                                whole_videos=True, stride=2))
    assert clip[0].shape == (3, 8, 64, 64, 3)
    assert len(videos) == 3 and all(v.shape[0] == 1 and v.shape[2:] == (64, 64, 3) for v, _ in videos)


@pytest.mark.backend_independent("tf.data only")
def test_strided_moving_shapes_are_rendered_long_enough_not_to_wrap():
    """16 frames at stride 4 span 61: rendered that long, the clip is frames 0, 4, ..., 60 of one motion."""
    from sideways_tf.data.moving_shapes import moving_shapes

    clip, _ = next(iter(data.load("moving_shapes", "validation", num_frames=16, stride=4, resolution=32, batch_size=1,
                                  training=False, num_examples=1, seed=3, normalize=False)))
    rendered = next(iter(moving_shapes("validation", num_examples=1, num_frames=61, resolution=32, seed=3)))
    np.testing.assert_array_equal(clip[0].numpy(), rendered["video"].numpy()[::4])


def test_moving_shapes_future_targets_and_montage():
    inputs, targets = next(iter(data.load("moving_shapes", "train", num_frames=8, resolution=32, batch_size=2,
                                          future_offset=4, num_examples=4, seed=1)))
    assert inputs.shape == targets.shape == (2, 8, 32, 32, 3)
    montage = next(iter(data.load("moving_shapes", "train", num_frames=8, resolution=32, batch_size=2,
                                  montage="concat", num_examples=4, seed=1)))
    assert montage[1].shape == (2, 8)


@pytest.mark.backend_independent("tf.data only")
@pytest.mark.parametrize(
    "kwargs, match",
    [({"name": "ucf"}, "`name` must be one of 'ucf101'"),
     ({"name": "moving_shapes", "resolution": 0}, "`resolution` must be a positive integer"),
     ({"name": "moving_shapes", "montage": "mix"}, "`montage`"),
     ({"name": "moving_shapes", "montage": "concat", "num_frames": 7}, "`montage_shots`"),
     ({"name": "moving_shapes", "whole_videos": True}, "`whole_videos=True` is for evaluation"),
     ({"name": "ucf101", "resolution": 300}, "`resolution` 300 is larger than the frames"),
     ({"name": "hmdb51"}, "`manual_dir` is required"),
     ({"name": "video_folder"}, "`root_dir` is required")],
)
def test_bad_input(kwargs, match, tmp_path):
    kwargs = {"split": "train", "data_dir": str(tmp_path), **kwargs}
    with tfds.testing.mock_data(num_examples=1):
        with pytest.raises(ValueError, match=match):
            data.load(**kwargs)


def test_a_dataset_that_is_not_prepared_is_not_downloaded_by_surprise(tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(ValueError, match=r"'ucf101' is not prepared in .*no_such_dir. Preparing it downloads about "
                                         r"6.5 GB .* pass download=True \(sideways-train --download\)"):
        data.load("ucf101", "train", data_dir=str(missing))
    assert not missing.exists()  # nothing created, nothing fetched


def test_a_manual_dir_that_is_missing_names_the_files_expected(tmp_path):
    with pytest.raises(ValueError, match=r"`manual_dir` '/no/such/dir' does not exist. For 'hmdb51' it must hold "
                                         r"videos/<class>/\*.avi"):
        data.load("hmdb51", "train", data_dir=str(tmp_path), manual_dir="/no/such/dir")
    (tmp_path / "manual" / "videos").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"has no splits folder. For 'hmdb51' it must hold"):
        data.load("hmdb51", "train", data_dir=str(tmp_path), manual_dir=str(tmp_path / "manual"))
