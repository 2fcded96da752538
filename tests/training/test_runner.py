"""The runner's evaluation protocol and its run-time choices."""

import dataclasses

import numpy as np
import pytest

from sideways_tf.training import experiments, runner

pytestmark = pytest.mark.backend_independent("the runner's data and bookkeeping")

TINY = dict(num_examples=8, epochs=1, steps_per_epoch=2, validation_steps=2, batch_size=4, num_frames=11,
            resolution=16, fidelity_every=0)


def test_whole_video_evaluation_scores_every_frame_of_each_video(tmp_path):
    config = dataclasses.replace(experiments.get("quickstart"), whole_video_eval=True, **TINY)
    results = runner.run(config, str(tmp_path), verbose=0)
    assert results["evaluation_protocol"] == "whole videos" and np.isfinite(results["evaluation"]["loss"])
    videos = list(runner.whole_video_dataset(config).take(2))
    assert all(v.shape[0] == 1 and v.shape[1] >= config.num_frames for v, _ in videos)
