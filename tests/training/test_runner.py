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


def test_a_run_backed_up_mid_epoch_resumes_at_that_step(tmp_path):
    from sideways_tf.training import backup, run_dir

    config = dataclasses.replace(experiments.get("quickstart"), **{**TINY, "epochs": 3})
    run_dir.claim(str(tmp_path), config)
    model = runner.build_model(config)
    runner.compile_model(model, config, steps_per_epoch=2)
    video = np.random.default_rng(0).uniform(-1, 1, size=runner.input_shape(config)).astype("float32")
    for _ in range(3):  # one epoch and a half, then "killed"
        model.train_on_batch(video, np.arange(config.batch_size) % config.num_classes)
    saver = backup.Backup(str(tmp_path / "backup"))
    saver.set_model(model)
    saver.save()
    results = runner.run(config, str(tmp_path), verbose=0)
    assert results["optimizer_steps"] == 6  # 3 epochs x 2 steps, none replayed
    assert results["first_epoch_this_run"] == 1 and len(results["history"]["loss"]) == 2
    assert not (tmp_path / "backup").exists()  # finished: nothing left to resume


def test_the_final_evaluation_of_central_clips_is_the_last_epochs_validation(tmp_path, monkeypatch):
    from sideways_tf import SidewaysModel

    calls = []
    evaluate = SidewaysModel.evaluate

    def counted(self, *args, **kwargs):
        calls.append(1)
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(SidewaysModel, "evaluate", counted)
    config = dataclasses.replace(experiments.get("quickstart"), **{**TINY, "epochs": 2})
    results = runner.run(config, str(tmp_path), verbose=0)
    assert len(calls) == 2  # one validation per epoch, none after
    assert results["evaluation"] == {k: results["history"][f"val_{k}"][-1] for k in ("accuracy", "loss")}
