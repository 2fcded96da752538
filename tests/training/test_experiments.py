"""Every registered experiment builds its model and input spec without data; configs validate."""

import dataclasses
import gc

import keras
import pytest

from sideways_tf.training import config as config_lib
from sideways_tf.training import experiments, runner

MODEL_KEYS = ("model", "num_classes", "width", "dropout", "space_to_depth", "layers_per_unit", "mode", "fusion",
              "shortcut", "resolution", "update_every")


def _one_per_model() -> list[str]:
    """The first experiment of each distinct model (the sweeps share theirs)."""
    seen = {}
    for name, config in experiments.EXPERIMENTS.items():
        seen.setdefault(tuple(getattr(config, k) for k in MODEL_KEYS), name)
    return list(seen.values())


def test_every_experiment_validates():
    for name in experiments.EXPERIMENTS:
        config_lib.validate(experiments.get(name))


@pytest.mark.backend_independent("configs; the zoo's builders are tested under both backends in tests/models")
@pytest.mark.parametrize("name", _one_per_model())
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
    assert config.space_to_depth and config.decay_epochs == (100, 200)
    assert experiments.get("skip_t1_vgg16_kinetics600").num_frames == 32
    # Sideways paper: warm-up, then /10 at epochs 100 and 200; Skip-Sideways supplement: "We train all
    # the models with ADAM and a cosine learning rate schedule" (its sweeps included). The quickstart ends
    # on a small rate too (a cosine), where a constant one let its last epochs fall back.
    for name, config in experiments.EXPERIMENTS.items():
        expected = {"sideways": "paper", "skip": "cosine", "stability": "cosine", "quickstart": "cosine"}.get(
            name.split("_")[0], "constant")
        assert (config.optimizer, config.schedule) == ("adam", expected), name


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
     ({"clip_value": 0.0}, "clip_value"), ({"num_examples": 0}, "num_examples"), ({"width": 0.0}, "width"),
     ({"dropout": 1.5}, "dropout"), ({"dropout": -0.1}, "dropout"), ({"momentum": 1.0}, "momentum"),
     ({"weight_decay": -1.0}, "weight_decay"), ({"layers_per_unit": 0}, "layers_per_unit"),
     ({"train_examples": 0}, "train_examples"), ({"train_examples": 8, "dataset": "ucf101"}, "train_examples"),
     ({"masking": False, "mode": "bp"}, "masking")],
)
def test_impossible_configs_name_the_key(changes, key):
    with pytest.raises(ValueError, match=f"config {key}"):
        config_lib.validate(dataclasses.replace(config_lib.Config(), **changes))


def test_train_examples_size_the_training_split_only():
    config = dataclasses.replace(experiments.get("quickstart"), num_examples=48, train_examples=16, batch_size=8,
                                 num_frames=4, resolution=16)
    train, evaluation = runner.build_datasets(config)
    assert (int(train.cardinality()), int(evaluation.cardinality())) == (2, 6)


def _has_space_to_depth(config) -> bool:
    import sideways_tf as sw

    def layers(layer):
        yield layer
        for inner in getattr(layer, "layers", None) or []:
            yield from layers(inner)

    return any(isinstance(layer, sw.layers.SpaceToDepth) for unit in runner.build_units(config)
               for layer in layers(unit))


def test_configs_follow_the_papers():
    get = experiments.get
    # Sideways paper: no space-to-depth (never mentioned); Skip-Sideways: "in all our experiments".
    for name in ("sideways_t1_simple_cnn_hmdb51", "sideways_t1_vgg8_ucf101", "sideways_t1_vgg8_dropout_hmdb51"):
        assert not get(name).space_to_depth, name
    assert not _has_space_to_depth(get("sideways_t1_vgg8_hmdb51"))
    assert _has_space_to_depth(get("skip_t1_vgg8_hmdb51")) and get("skip_t2_fa_ucf101").space_to_depth
    # "at test time we evaluate over the whole video sequence"
    assert get("sideways_t1_vgg8_hmdb51").whole_video_eval and get("skip_t1_vgg8_ucf101").whole_video_eval
    assert not get("quickstart").whole_video_eval
    # Batch sizes: 16 per host over 8 hosts; Table 6 256; Table 7 64.
    assert get("skip_t1_vgg16_kinetics600").batch_size == 128
    assert {get(n).batch_size for n in ("skip_t6_vgg16_kinetics600", "skip_t6_vgg16_3d_kinetics600",
                                        "skip_t6_causal_vgg16_3d_kinetics600")} == {256}
    assert get("skip_t7_full_res_kinetics600").batch_size == 64
    # Full-Res keeps the frame's resolution.
    assert not get("skip_t7_full_res_kinetics600").space_to_depth
    assert not _has_space_to_depth(get("skip_t7_full_res_kinetics600"))
    # Auto-encoding: 240x240 crops, the test split, an update after every frame.
    auto = get("sideways_t3_autoencoding")
    assert (auto.resolution, auto.eval_split, auto.update_every) == (240, "test", 1)
    # The supplement's sweeps: the learning-rate x frame-rate grid and the montage learning rates.
    assert len([n for n in experiments.EXPERIMENTS if n.startswith("stability_lr") and n.endswith("fps")]) == 12
    assert len([n for n in experiments.EXPERIMENTS if n.startswith("stability_montage_concat") and "_lr" in n]) == 6
