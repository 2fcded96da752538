"""tfds builders over video files on disk: any class-per-folder tree, HMDB51 and Kinetics-600.

Each builder decodes its videos once (PyAV), stores the frames JPEG-encoded, and is read back
with `tfds.decode.SkipDecoding` so that only the frames a clip needs are decoded.

What to download (these builders never download; they read `manual_dir`):

* HMDB51: `hmdb51_org.rar` (one .rar per class inside; unpack them all into `manual_dir/videos/<class>/`)
  and `test_train_splits.rar` (unpack into `manual_dir/splits/`, holding
  `<class>_test_split{1,2,3}.txt`), from the HMDB51 page of the Serre lab (Brown University).
* Kinetics-600: the annotation CSVs `train.csv` and `validate.csv` (columns `label, youtube_id,
  time_start, time_end, split`) into `manual_dir/`, and the clips you could fetch as
  `manual_dir/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4` (the layout of the
  official download scripts) or flat in `manual_dir/<split>/`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
from typing import Iterable, Optional

import tensorflow_datasets as tfds
from absl import logging

from sideways_tf.video_io import VideoReadError, read_video

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


HMDB51_CLASSES = (
    "brush_hair", "cartwheel", "catch", "chew", "clap", "climb", "climb_stairs", "dive", "draw_sword", "dribble",
    "drink", "eat", "fall_floor", "fencing", "flic_flac", "golf", "handstand", "hit", "hug", "jump", "kick",
    "kick_ball", "kiss", "laugh", "pick", "pour", "pullup", "punch", "push", "pushup", "ride_bike", "ride_horse",
    "run", "shake_hands", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "situp", "smile", "smoke", "somersault",
    "stand", "swing_baseball", "sword", "sword_exercise", "talk", "throw", "turn", "walk", "wave",
)


def _features(class_names=None, num_classes=None):
    labels = (tfds.features.ClassLabel(names=list(class_names)) if class_names is not None
              else tfds.features.ClassLabel(num_classes=num_classes))
    return tfds.features.FeaturesDict({
        "video": tfds.features.Video((None, None, None, 3), encoding_format="jpeg"),
        "label": labels,
        "filename": tfds.features.Text(),
    })


class _VideoFilesBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared generation: decode each (path, label) pair, skip and count the unreadable ones."""

    smallest_side: Optional[int] = None
    max_frames: Optional[int] = None

    def _generate_videos(self, items: Iterable[tuple[str, object]], split: str):
        items = list(items)
        skipped = []
        for path, label in items:
            try:
                frames = read_video(path, self.max_frames, self.smallest_side)
            except VideoReadError as error:
                skipped.append(path)
                logging.warning("Skipping unreadable video: %s", error)
                continue
            yield path, {"video": frames, "label": label, "filename": os.path.basename(path)}
        self.skipped_files = getattr(self, "skipped_files", {})
        self.skipped_files[split] = skipped
        if skipped:
            logging.warning("%s/%s: skipped %d of %d videos (unreadable).", self.name, split, len(skipped), len(items))


def _class_dirs(root: str) -> list[str]:
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))


def _videos_in(folder: str) -> list[str]:
    """The video files under `folder`, nested folders included, sorted."""
    return sorted(os.path.join(top, f) for top, _, files in os.walk(folder) for f in files
                  if f.lower().endswith(VIDEO_EXTENSIONS))


def tree_fingerprint(root: str) -> str:
    """A digest of every video file under `root`: its path, size and modification time.

    A file or class added, removed or changed gives another digest, hence another prepared copy.
    """
    digest = hashlib.sha1()
    for path in _videos_in(root):
        stat = os.stat(path)
        digest.update(f"{os.path.relpath(path, root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


class VideoFolder(_VideoFilesBuilder):
    """Any folder with one sub-folder of videos per class, prepared once into a tfds dataset.

    `root/<class>/<video>` gives one split, `"train"`; `root/<split>/<class>/<video>` (split in
    train, validation, test) gives those splits, with the classes of the first. Videos in
    folders nested inside a class folder belong to that class. The prepared copy is keyed to the
    tree's content (`tree_fingerprint`): adding, removing or changing a video prepares a new
    copy rather than reusing a stale one. Class folders without videos are left out with a
    warning; fewer than two classes are refused.

    Args:
      root_dir: the folder.
      smallest_side: resize frames so that their shorter side has this length (None: keep).
      max_frames: keep at most this many frames per video.
      **kwargs: passed to the tfds builder (`data_dir`, ...).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}

    def __init__(self, *, root_dir: str, smallest_side: Optional[int] = None, max_frames: Optional[int] = None,
                 **kwargs):
        if not os.path.isdir(root_dir):
            raise ValueError(f"`root_dir` {root_dir!r} is not a folder.")
        self.root_dir = os.path.abspath(root_dir)
        self.smallest_side = smallest_side
        self.max_frames = max_frames
        key = f"{self.root_dir}|{smallest_side}|{max_frames}|{tree_fingerprint(self.root_dir)}".encode()
        name = f"{os.path.basename(self.root_dir) or 'root'}_{hashlib.sha1(key).hexdigest()[:8]}"
        kwargs.setdefault("config", tfds.core.BuilderConfig(name=name.replace("-", "_").lower()))
        super().__init__(**kwargs)

    def _split_dirs(self) -> dict[str, str]:
        named = {s: os.path.join(self.root_dir, s) for s in ("train", "validation", "test")}
        present = {s: d for s, d in named.items() if os.path.isdir(d)}
        return present if present else {"train": self.root_dir}

    @functools.cached_property
    def _classes(self) -> list[str]:
        first = next(iter(self._split_dirs().values()))
        folders = _class_dirs(first)
        classes = [c for c in folders if _videos_in(os.path.join(first, c))]
        empty = sorted(set(folders) - set(classes))
        if empty:
            logging.warning("video_folder %s: class folders without videos are left out: %s", first, empty)
        if len(classes) < 2:
            raise ValueError(f"`root_dir` {first!r} needs at least two class folders holding videos "
                             f"({', '.join(VIDEO_EXTENSIONS)}); found {classes or 'none'}.")
        return classes

    def _info(self):
        classes = self._classes
        return tfds.core.DatasetInfo(builder=self, features=_features(classes),
                                     description=f"Videos from {self.root_dir}.")

    def _split_generators(self, dl_manager):
        return {split: self._generate_split(folder, split) for split, folder in self._split_dirs().items()}

    def _generate_split(self, folder, split):
        videos = {c: _videos_in(os.path.join(folder, c)) for c in _class_dirs(folder)}
        unknown = [c for c, paths in videos.items() if paths and c not in self._classes]
        if unknown:
            logging.warning("video_folder %s: classes not in the first split are left out: %s", folder, unknown)
        items = [(path, c) for c in self._classes for path in videos.get(c, [])]
        return self._generate_videos(items, split)

    def _generate_examples(self, **kwargs):  # pragma: no cover - generators come from _split_generators
        raise NotImplementedError


class Hmdb51(_VideoFilesBuilder):
    """HMDB51 from the official archives in `manual_dir` (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f"split{i}", description=f"Official split {i}.")
                       for i in (1, 2, 3)]
    smallest_side = 256

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=_features(HMDB51_CLASSES),
                                     homepage="https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/")

    def _split_generators(self, dl_manager):
        root = _require_manual_dir(dl_manager)
        videos, splits = os.path.join(root, "videos"), os.path.join(root, "splits")
        for needed in (videos, splits):
            if not os.path.isdir(needed):
                raise ValueError(f"HMDB51: {needed!r} is missing; see the manual download instructions.")
        number = self.builder_config.name[-1]
        members = {"train": [], "test": []}
        for class_name in _class_dirs(videos):
            split_file = os.path.join(splits, f"{class_name}_test_split{number}.txt")
            if not os.path.exists(split_file):
                raise ValueError(f"HMDB51: split file {split_file!r} is missing.")
            with open(split_file) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2 and parts[1] in ("1", "2"):
                        split = "train" if parts[1] == "1" else "test"
                        members[split].append((os.path.join(videos, class_name, parts[0]), class_name))
        return {split: self._generate_videos(items, split) for split, items in members.items()}

    def _generate_examples(self, **kwargs):  # pragma: no cover
        raise NotImplementedError


class Kinetics600(_VideoFilesBuilder):
    """Kinetics-600 from the annotation CSVs and the clips in `manual_dir` (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
    smallest_side = 256
    CSVS = {"train": "train.csv", "validation": "validate.csv"}

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=_features(num_classes=600),
                                     homepage="https://github.com/cvdfoundation/kinetics-dataset",
                                     description="Labels are indices into the sorted class names of train.csv.")

    def _split_generators(self, dl_manager):
        root = _require_manual_dir(dl_manager)
        train_csv = os.path.join(root, self.CSVS["train"])
        if not os.path.exists(train_csv):
            raise ValueError(f"Kinetics-600: {train_csv!r} is missing; see the manual download instructions.")
        with open(train_csv) as f:
            class_index = {name: i for i, name in enumerate(sorted({row["label"] for row in csv.DictReader(f)}))}
        generators = {}
        for split, name in self.CSVS.items():
            csv_path = os.path.join(root, name)
            if not os.path.exists(csv_path):
                raise ValueError(f"Kinetics-600: {csv_path!r} is missing; see the manual download instructions.")
            folder = os.path.join(root, "train" if split == "train" else "validation")
            items, missing = [], 0
            with open(csv_path) as f:
                for row in csv.DictReader(f):
                    file_name = f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}.mp4"
                    for candidate in (os.path.join(folder, row["label"], file_name), os.path.join(folder, file_name)):
                        if os.path.exists(candidate):
                            items.append((candidate, class_index[row["label"]]))
                            break
                    else:
                        missing += 1
            if missing:
                logging.warning("Kinetics-600/%s: %d clips listed in %s are not on disk.", split, missing, name)
            generators[split] = self._generate_videos(items, split)
        return generators

    def _generate_examples(self, **kwargs):  # pragma: no cover
        raise NotImplementedError


def _require_manual_dir(dl_manager) -> str:
    root = dl_manager.manual_dir
    if root is None or not os.path.isdir(root):
        raise ValueError(f"`manual_dir` {root!r} does not exist: download and unpack the files it needs first.")
    return str(root)
