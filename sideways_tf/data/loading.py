"""One entry point: `load(name, split, ...)` -> a batched, prefetched `tf.data.Dataset` for `fit`."""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from sideways_tf.data import clip_ops
from sideways_tf.data.decode import decode_frames
from sideways_tf.data.moving_shapes import moving_shapes

CACHE_BYTES = 256 * 2**20
"""Moving shapes splits up to this size (uint8 frames) are rendered once and kept in memory."""

DATASETS = ("ucf101", "hmdb51", "kinetics600", "video_folder", "moving_shapes")
MONTAGES = ("concat", "interleave")
UCF101_CONFIG = "ucf101/ucf101_1_256"


def _check_positive(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")


UCF101_DOWNLOAD = "about 6.5 GB (the UCF101 archive and its splits, from the UCF servers)"
MANUAL_FILES = {
    "hmdb51": "videos/<class>/*.avi (unpack hmdb51_org.rar and the .rar of each class in it) and "
              "splits/<class>_test_split{1,2,3}.txt (unpack test_train_splits.rar)",
    "kinetics600": "the annotation CSVs (train.csv, validate.csv, test.csv) and the clips in <split>/<label>/ or "
                   "flat in <split>/",
}


def _load_prepared_or_download(name: str, config: str, split: str, data_dir, decoders, download: bool):
    """`tfds.load` of a dataset that must be downloaded: prepared only when asked (`download=True`).

    Without `download`, tfds is told not to download; a dataset missing from `data_dir` is then
    a `ValueError` saying how large it is and how to start the download (nothing is created).
    """
    try:
        return tfds.load(config, split=split, data_dir=data_dir, decoders=decoders, download=download)
    except AssertionError as error:  # tfds' "could not find data" when download=False
        if download:
            raise
        where = data_dir or "tfds' default folder (~/tensorflow_datasets)"
        raise ValueError(f"{name!r} is not prepared in {where}. Preparing it downloads {UCF101_DOWNLOAD} and needs "
                         f"network access: pass download=True (sideways-train --download) to start it, or --data_dir "
                         f"pointing at a folder where it was prepared.") from error


def _check_manual_dir(name: str, manual_dir: str) -> None:
    """The folder of manually downloaded files exists and holds what the builder reads."""
    expected = MANUAL_FILES[name]
    if not os.path.isdir(manual_dir):
        raise ValueError(f"`manual_dir` {manual_dir!r} does not exist. For {name!r} it must hold {expected}.")
    if name == "hmdb51":
        missing = [sub for sub in ("videos", "splits") if not os.path.isdir(os.path.join(manual_dir, sub))]
        if missing:
            raise ValueError(f"`manual_dir` {manual_dir!r} has no {' or '.join(missing)} folder. For 'hmdb51' it "
                             f"must hold {expected}.")


def _encoded_source(name, split, data_dir, manual_dir, root_dir, hmdb51_split, download=False):
    """The unbatched dataset of `{"video": encoded frames [N], "label": int}` and its frame size."""
    decoders = {"video": tfds.decode.SkipDecoding()}
    if name == "ucf101":
        return _load_prepared_or_download(name, UCF101_CONFIG, split, data_dir, decoders, download), 256
    from sideways_tf.data import builders

    if name == "video_folder":
        if root_dir is None:
            raise ValueError("`root_dir` is required for 'video_folder': a folder with one sub-folder per class.")
        builder = builders.VideoFolder(root_dir=root_dir, data_dir=data_dir)
    elif name == "hmdb51":
        builder = builders.Hmdb51(config=f"split{hmdb51_split}", data_dir=data_dir)
    else:
        builder = builders.Kinetics600(data_dir=data_dir)
    if name != "video_folder" and not builder.is_prepared():
        if manual_dir is None:
            raise ValueError(f"`manual_dir` is required to prepare {name!r} the first time: "
                             f"{type(builder).MANUAL_DOWNLOAD_INSTRUCTIONS.splitlines()[0]}")
        _check_manual_dir(name, manual_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder.as_dataset(split=split, decoders=decoders), builder.smallest_side


def load(
    name: str,
    split: str,
    *,
    num_frames: int = 64,
    resolution: int = 112,
    batch_size: int = 8,
    training: bool = True,
    stride: int = 1,
    future_offset: Optional[int] = None,
    whole_videos: bool = False,
    montage: Optional[str] = None,
    montage_shots: int = 2,
    normalize: bool = True,
    data_dir: Optional[str] = None,
    manual_dir: Optional[str] = None,
    download: bool = False,
    root_dir: Optional[str] = None,
    hmdb51_split: int = 1,
    label_set: str = "motion",
    num_examples: Optional[int] = None,
    shuffle_buffer: int = 256,
    seed: Optional[int] = None,
) -> tf.data.Dataset:
    """A dataset of `(video [B, T, R, R, 3], labels)` batches ready for `SidewaysModel.fit`.

    Training samples a random sub-clip (random start, loop padding for short videos), resizes
    the shorter side to `8/7 R`, takes a random `R x R` crop and flips the clip left-right with
    probability 1/2; evaluation takes the central sub-clip and the central crop.

    Args:
      name: `"ucf101"`, `"hmdb51"`, `"kinetics600"`, `"video_folder"` or `"moving_shapes"`.
      split: the split's name (`"train"`, `"test"`, `"validation"`, or tfds slicing).
      num_frames: T, frames per clip.
      resolution: R, the crop's side.
      batch_size: B.
      training: augmentation, shuffling and dropping the last partial batch.
      stride: k, take every k-th frame (lower frame rates).
      future_offset: if set, labels are the frames k ahead, `y_t = x_{t+k}` `[B, T, R, R, 3]`.
      whole_videos: evaluation on every frame of each video, one video per batch (`batch_size=1`).
      montage: None, `"concat"` (each clip made of `montage_shots` clips of the batch, per-frame
        labels) or `"interleave"` (their frames interleaved).
      montage_shots: clips per montage.
      normalize: float32 in [-1, 1] (True) or uint8 (False).
      data_dir: where tfds keeps prepared datasets.
      manual_dir: the downloaded files of `"hmdb51"` and `"kinetics600"`.
      download: let tfds download and prepare `"ucf101"` when it is not prepared in `data_dir`
        (about 6.5 GB); without it a missing dataset is a `ValueError` saying so.
      root_dir: the class-per-folder tree of `"video_folder"`.
      hmdb51_split: 1, 2 or 3.
      label_set: `"motion"`, `"appearance"` or `"shape_and_direction"` for `"moving_shapes"`.
      num_examples: examples per split of `"moving_shapes"` (its default otherwise); a split of at most
        `CACHE_BYTES` is rendered once and kept in memory.
      shuffle_buffer: examples in the shuffle buffer when training.
      seed: shuffling and augmentation seed.

    Returns:
      A batched, prefetched `tf.data.Dataset`.
    """
    if name not in DATASETS:
        raise ValueError(f"`name` must be one of {', '.join(repr(d) for d in DATASETS)}; got {name!r}.")
    for arg, value in (("num_frames", num_frames), ("resolution", resolution), ("batch_size", batch_size),
                       ("stride", stride), ("montage_shots", montage_shots)):
        _check_positive(arg, value)
    if future_offset is not None:
        _check_positive("future_offset", future_offset)
    if montage is not None and montage not in MONTAGES:
        raise ValueError(f"`montage` must be None, 'concat' or 'interleave'; got {montage!r}.")
    if montage is not None and (num_frames % montage_shots or batch_size < montage_shots):
        raise ValueError(f"`montage_shots` ({montage_shots}) must divide `num_frames` ({num_frames}) "
                         f"and be at most `batch_size` ({batch_size}).")
    if whole_videos and (training or batch_size != 1):
        raise ValueError("`whole_videos=True` is for evaluation: it needs `training=False` and `batch_size=1`.")
    total = num_frames + (future_offset or 0)

    if name == "moving_shapes":
        # Rendered long enough for the strided span: loop padding would cut the smooth motion.
        source = moving_shapes(split, label_set=label_set, num_examples=num_examples,
                               num_frames=max(32, (total - 1) * stride + 1), resolution=resolution, seed=seed or 0)
        if int(source.cardinality()) * source.element_spec["video"].shape.num_elements() <= CACHE_BYTES:
            source = source.cache()  # rendered once, not every epoch
        frame_size, resize_to = resolution, None

        def frames_of(example, indices):
            return tf.gather(example["video"], indices)
    else:
        source, frame_size = _encoded_source(name, split, data_dir, manual_dir, root_dir, hmdb51_split, download)
        resize_to = max(resolution, round(resolution * 8 / 7))

        def frames_of(example, indices):
            return decode_frames(example["video"], indices)

    if frame_size is not None and resolution > frame_size:
        raise ValueError(f"`resolution` {resolution} is larger than the frames of {name!r} ({frame_size} pixels).")
    base_seed = tf.constant([seed or 0, 7], tf.int64)

    def prepare(index, example):
        seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(base_seed, index), 3)
        length = tf.shape(example["video"])[0]
        if whole_videos:
            indices = tf.range(0, length, stride)
        else:
            indices = clip_ops.sample_indices(length, total, stride, training, seed=seeds[0])
        clip = frames_of(example, indices)
        if resize_to is not None:
            tf.debugging.assert_greater_equal(
                tf.minimum(tf.shape(clip)[1], tf.shape(clip)[2]), resolution,
                message=f"{name}: a video's frames are smaller than `resolution` {resolution}")
            clip = clip_ops.resize_smallest_side(clip, resize_to)
            clip = clip_ops.random_crop(clip, resolution, seeds[1]) if training else clip_ops.center_crop(
                clip, resolution)
        if training:
            clip = clip_ops.random_flip_left_right(clip, seeds[2])
        clip = clip_ops.normalize(clip) if normalize else clip
        clip = tf.ensure_shape(clip, [None if whole_videos else total, resolution, resolution, 3])
        if future_offset:
            return clip_ops.future_targets(clip, future_offset)
        return clip, tf.cast(example["label"], tf.int32)

    dataset = source.enumerate()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if montage is not None:
        fn = clip_ops.montage_concat if montage == "concat" else clip_ops.interleave_frames
        dataset = dataset.map(lambda v, y: fn(v, y, montage_shots), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
