"""Every builder: unit count, output shapes, parameter counts from closed forms, a step per mode."""

from itertools import pairwise

import keras
import numpy as np
import pytest

import sideways_tf as sw

K = 51
BN = 4  # batch norm holds gamma, beta, moving mean and moving variance per channel


def conv(k, cin, cout, bn=True):
    return k * k * cin * cout + (BN * cout if bn else 0)


def _built(units, resolution, mode="bp", fusion="concat"):
    model = sw.SidewaysModel(units, mode=mode, fusion=fusion)
    model.build((None, None, resolution, resolution, 3))
    return model


def simple_cnn_params():
    channels = [3, 32, 64, 64, 128, 256]
    return sum(conv(3, a, b, bn=False) for a, b in pairwise(channels)) + 256 * K + K


def vgg8_params(resolution):
    p = (resolution // 16) // 2  # /2 conv1, /2 pool1, /2 conv2, /2 pool2, then pool5 (floor)
    return (conv(7, 3, 96) + conv(5, 96, 256) + conv(3, 256, 512) + 2 * conv(3, 512, 512)
            + p * p * 512 * 4096 + 4096 * 2048 + 2048 * K + K)


def vgg16_params(resolution):
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    p = (resolution // 16) // 2
    return (sum(conv(3, a, b) for a, b in pairwise(channels))
            + p * p * 512 * 4096 + 4096 * 4096 + 4096 * K + K)


def full_res_params():
    pairs = [(3, 64), (64, 64), (64, 64), (64, 64), (64, 32), (32, 32)] + [(32, 32)] * 8 + [(32, 32)]
    return sum(conv(3, a, b) for a, b in pairs) + conv(3, 32, 3, bn=False) + 3


def encoder_decoder_params():
    channels = [3, 32, 64, 64, 128, 256]
    encoder = sum(conv(3, a, b, bn=False) for a, b in pairwise(channels))
    decoder_channels = [256, 128, 64, 64, 32, 3]
    return encoder + sum(conv(3, a, b, bn=False) for a, b in pairwise(decoder_channels)) + 3


BUILDERS = {
    "simple_cnn": (lambda: sw.models.simple_cnn(K), 6, lambda r: (None, K), lambda r: simple_cnn_params()),
    "vgg8": (lambda: sw.models.vgg8(K), 8, lambda r: (None, K), vgg8_params),
    "vgg16": (lambda: sw.models.vgg16(K), 8, lambda r: (None, K), vgg16_params),
    "full_res": (sw.models.full_res, 8, lambda r: (None, r, r, 3), lambda r: full_res_params()),
    "encoder_decoder": (sw.models.encoder_decoder, 6, lambda r: (None, r, r, 3), lambda r: encoder_decoder_params()),
}


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("resolution", [112, 224])
def test_units_shapes_and_parameter_counts(name, resolution):
    build, num_units, output_shape, params = BUILDERS[name]
    units = build()
    assert len(units) == num_units
    model = _built(units, resolution)
    assert (None,) + model.prediction_shape == output_shape(resolution)
    assert model.count_params() == params(resolution)


def test_vgg8_closed_form_helper_and_skip_counts():
    for resolution in (112, 224):
        assert sw.models.vgg8_num_params(K, resolution=resolution) == vgg8_params(resolution)
    # Skip-Sideways concat: units 3..8 also read h_{i-2} (conv3 gets conv1's 96 channels, ...,
    # fc7 conv5's globally pooled 512, fc8 fc6's 4096).
    expected = (conv(7, 3, 96) + conv(5, 96, 256) + conv(3, 256 + 96, 512) + conv(3, 512 + 256, 512)
                + conv(3, 512 + 512, 512) + 3 * 3 * (512 + 512) * 4096 + (4096 + 512) * 2048
                + (2048 + 4096) * K + K)
    assert _built(sw.models.vgg8(K), 112, "skip_sideways").count_params() == expected
    assert sw.models.vgg8_num_params(K, fusion="concat") == expected
    # add: conv1's 96 channels are projected to 256 (no divisor), fc6's 4096 to 2048.
    expected_add = vgg8_params(112) + 96 * 256 + 4096 * 2048
    assert _built(sw.models.vgg8(K), 112, "skip_sideways", "add").count_params() == expected_add
    assert sw.models.vgg8_num_params(K, fusion="add") == expected_add


@pytest.mark.parametrize("fusion", ["concat", "add"])
def test_wide_vgg8_matches_skip_sideways_parameters(fusion):
    width = sw.models.wide_vgg8_width(K, fusion=fusion)
    assert width > 1.0
    wide = _built(sw.models.vgg8(K, width=width), 112).count_params()
    skip = _built(sw.models.vgg8(K), 112, "skip_sideways", fusion).count_params()
    assert abs(wide - skip) / skip < 0.02


def test_space_to_depth_starts_the_first_unit():
    units = sw.models.vgg8(K, space_to_depth=True)
    assert isinstance(units[0].layers[0], sw.layers.SpaceToDepth)
    model = _built(units, 224)
    assert model.count_params() == sw.models.vgg8_num_params(K, resolution=224, space_to_depth=True)
    frames = _built(sw.models.full_res(space_to_depth=True), 64)
    assert frames.prediction_shape == (64, 64, 3)


def test_vgg16_groups_layers_into_units():
    assert len(sw.models.vgg16(K, layers_per_unit=1)) == 16
    assert len(sw.models.vgg16(K, layers_per_unit=3)) == 6
    model = _built(sw.models.vgg16(K, layers_per_unit=1), 112, "skip_sideways")
    assert len(model.stages) == 16
    with pytest.raises(ValueError, match="`layers_per_unit`"):
        sw.models.vgg16(K, layers_per_unit=0)


def test_bias_only_on_the_last_linear_layer():
    model = _built(sw.models.vgg8(K), 112)
    biases = [v.path for v in model.trainable_variables if v.path.endswith("bias")]
    assert len(biases) == 1 and "fc8" in biases[0]
    with_bias = _built(sw.models.vgg8(K, hidden_bias=True), 112)
    assert sum(v.path.endswith("bias") for v in with_bias.trainable_variables) == 8


def test_bad_arguments():
    with pytest.raises(ValueError, match="`num_classes`"):
        sw.models.vgg8(0)
    with pytest.raises(ValueError, match="`width`"):
        sw.models.simple_cnn(3, width=-1)
    with pytest.raises(ValueError, match="`dropout`"):
        sw.models.vgg8(3, dropout=1.0)
    with pytest.raises(ValueError, match="`fusion`"):
        sw.models.wide_vgg8_width(3, fusion="sum")


SMALL = {
    "simple_cnn": lambda: sw.models.simple_cnn(4, width=0.125),
    "vgg8": lambda: sw.models.vgg8(4, width=1 / 16, dropout=0.5),
    "vgg16": lambda: sw.models.vgg16(4, width=1 / 32),
    "full_res": lambda: sw.models.full_res(width=0.125),
    "encoder_decoder": lambda: sw.models.encoder_decoder(width=0.125),
}
CONFIGS = [("bp", "concat"), ("sideways", "concat"), ("skip_sideways", "concat"), ("skip_sideways", "add"),
           ("fa_skip_sideways", "concat")]


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("mode, fusion", CONFIGS)
def test_one_training_step(name, mode, fusion):
    keras.utils.set_random_seed(0)
    units = SMALL[name]()
    model = sw.SidewaysModel(units, mode=mode, fusion=fusion)
    frames = 2 * len(units) - 1
    video = np.random.default_rng(0).uniform(-1, 1, size=(2, frames, 32, 32, 3)).astype("float32")
    dense_output = name in ("full_res", "encoder_decoder")
    if dense_output:
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        targets = video  # per-frame targets [B, T, H, W, 3]
    else:
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        targets = np.array([1, 3])
    model.build(video.shape)
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = model.fit(video, targets, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables, strict=True)]
    assert all(changed), [v.path for v, c in zip(model.trainable_variables, changed, strict=True) if not c]


def test_the_readme_lists_every_builder():
    import os

    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8").read()
    for name in sw.models.__all__:
        assert f"`{name}(" in readme, name
