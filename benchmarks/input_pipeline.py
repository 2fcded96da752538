"""Input pipeline throughput against what training consumes.

    python -m benchmarks.input_pipeline [--batches 8] [--train_batches 2]

Clips per second of `sideways_tf.data.load` for the UCF101-shaped pipeline (tfds mock data:
256x256 JPEG frames, T = 64, 112x112 crops, B = 8) and for `moving_shapes`, beside the clips per
second that `fit` of Sideways VGG-8 consumes on the same clips. Target: the pipeline delivers at
least twice what training consumes.
"""

from __future__ import annotations

import argparse
import time

import keras  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

import sideways_tf as sw  # noqa: E402
from benchmarks.common import report
from sideways_tf import data  # noqa: E402

FRAMES, RESOLUTION, BATCH = 64, 112, 8


def clips_per_second(dataset, batches: int) -> float:
    iterator = iter(dataset)
    next(iterator)  # warm up (tracing, first decode)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH / (time.perf_counter() - start)


def training_clips_per_second(videos, labels, batches: int) -> float:
    model = sw.SidewaysModel(sw.models.vgg8(101), mode="sideways")
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.train_on_batch(videos, labels)  # trace
    start = time.perf_counter()
    for _ in range(batches):
        model.train_on_batch(videos, labels)
    return batches * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--train_batches", type=int, default=2)
    args = parser.parse_args()
    options = dict(num_frames=FRAMES, resolution=RESOLUTION, batch_size=BATCH, seed=0)
    with tfds.testing.mock_data(num_examples=64):
        ucf = data.load("ucf101", "train", **options).repeat()
        ucf_rate = clips_per_second(ucf, args.batches)
        videos, labels = next(iter(ucf))
    shapes_rate = clips_per_second(data.load("moving_shapes", "train", **options).repeat(), args.batches)
    train_rate = training_clips_per_second(videos, labels, args.train_batches)
    rows = [{"what": "ucf101-shaped pipeline (mock, 256x256 JPEG)", "clips_per_s": ucf_rate},
            {"what": "moving_shapes pipeline", "clips_per_s": shapes_rate},
            {"what": "fit, Sideways VGG-8 (consumption)", "clips_per_s": train_rate}]
    summary = {"ucf101 pipeline / training": ucf_rate / train_rate,
               "moving_shapes pipeline / training": shapes_rate / train_rate}
    report("input_pipeline", rows, ["what", "clips_per_s"], summary)


if __name__ == "__main__":
    main()
