"""Every registered experiment builds its model and input spec without data; configs validate."""

import dataclasses
import gc

import keras
import pytest

from sideways_tf.training import config as config_lib
from sideways_tf.training import experiments, runner


@pytest.mark.backend_independent("configs; the zoo's builders are tested under both backends in tests/models")
@pytest.mark.parametrize("name", list(experiments.EXPERIMENTS))
def test_every_experiment_builds(name):
    config = config_lib.validate(experiments.get(name))
    # Full size for the VGGs and Full-Res; the 3D baselines at a narrower width to spare CI's memory.
    if config.model.endswith("vgg16_3d"):
        config = dataclasses.replace(config, width=0.25)
    model = runner.build_model(config)
    assert model.count_params() > 0
    assert runner.input_shape(config) == (config.batch_size, config.num_frames, config.resolution,
                                          config.resolution, 3)
    del model
    keras.backend.clear_session()
    gc.collect()


def test_paper_recipe():
    config = experiments.get("skip_t1_vgg8_hmdb51")
    assert (config.optimizer, config.clip_value, config.batch_size, config.resolution, config.num_frames) == (
        "adam", 1.0, 8, 112, 64)
    assert config.space_to_depth and config.schedule == "paper" and config.decay_epochs == (100, 200)
    assert experiments.get("skip_t1_vgg16_kinetics600").num_frames == 32


def test_overrides_parse_by_type():
    config = config_lib.apply_overrides(config_lib.Config(), [
        "learning_rate=0.5", "epochs=3", "space_to_depth=false", "decay_epochs=10,20", "future_offset=none",
        "montage=concat"])
    assert (config.learning_rate, config.epochs, config.space_to_depth, config.decay_epochs) == (0.5, 3, False,
                                                                                                (10, 20))
    assert config.future_offset is None and config.montage == "concat"


@pytest.mark.parametrize(
    "changes, key",
    [({"model": "resnet"}, "model"), ({"model": "full_res"}, "future_offset"),
     ({"future_offset": 8}, "future_offset"), ({"resolution": 0}, "resolution"),
     ({"optimizer": "lamb"}, "optimizer"), ({"batch_size": 0}, "batch_size"),
     ({"learning_rate": float("nan")}, "learning_rate"), ({"learning_rate": float("inf")}, "learning_rate"),
     ({"steps_per_epoch": 0}, "steps_per_epoch"), ({"validation_steps": -1}, "validation_steps"),
     ({"clip_value": 0.0}, "clip_value"), ({"num_examples": 0}, "num_examples")],
)
def test_impossible_configs_name_the_key(changes, key):
    with pytest.raises(ValueError, match=f"config {key}"):
        config_lib.validate(dataclasses.replace(config_lib.Config(), **changes))
