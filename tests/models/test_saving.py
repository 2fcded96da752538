"""Sideways models built from the zoo save and load with identical predictions."""

import keras
import numpy as np
import pytest

import sideways_tf as sw
from tests.helpers import dense_units


@pytest.mark.parametrize("mode, fusion", [("sideways", "concat"), ("skip_sideways", "add")])
def test_sideways_model_round_trip(tmp_path, mode, fusion):
    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(sw.models.vgg8(4, width=1 / 16, space_to_depth=True), mode=mode, fusion=fusion)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    video = np.random.default_rng(0).normal(size=(2, 15, 64, 64, 3)).astype("float32")
    model.fit(video, np.array([0, 3]), verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, sw.SidewaysModel) and (loaded.mode, loaded.fusion) == (mode, fusion)
    np.testing.assert_allclose(loaded.predict(video, verbose=0), model.predict(video, verbose=0), atol=1e-5)


def test_remat_unit_round_trip(tmp_path):
    units = [keras.Sequential([sw.layers.SpaceToDepth(2), sw.layers.Remat(keras.layers.Conv2D(4, 3)),
                               keras.layers.GlobalAveragePooling2D()]), keras.layers.Dense(3)]
    model = sw.SidewaysModel(units, mode="sideways")
    model.compile(optimizer="sgd", loss="mse")
    video = np.random.default_rng(0).normal(size=(2, 4, 8, 8, 3)).astype("float32")
    expected = model.predict(video, verbose=0)
    path = str(tmp_path / "remat.keras")
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(video, verbose=0), expected, atol=1e-6)


def test_weights_of_another_model_or_a_broken_file_are_named(tmp_path):
    concat = sw.SidewaysModel(dense_units(3), mode="skip_sideways", fusion="concat")
    concat.build((2, 7, 5))
    path = str(tmp_path / "concat.weights.h5")
    concat.save_weights(path)
    add = sw.SidewaysModel(dense_units(3), mode="skip_sideways", fusion="add", shortcut="project")
    add.build((2, 7, 5))
    with pytest.raises(ValueError, match=r"the weights in .*concat.weights.h5 do not fit this model "
                                         r"\(mode='skip_sideways', fusion='add', shortcut='project', 3 units\)"):
        add.load_weights(path)
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"truncated")
    with pytest.raises(OSError, match=r"broken.weights.h5 is not a readable Keras weights file"):
        concat.load_weights(str(broken))
