"""PseudoGradientFidelity: cosine 1 on a constant clip, less on a varying one."""

import keras
import numpy as np
import pytest

import sideways_tf as sw
from sideways_tf.training.callbacks import PseudoGradientFidelity, unit_cosines
from tests.helpers import compiled, constant_clip, conv_units, random_clip


@pytest.mark.parametrize("mode", ["sideways", "skip_sideways"])
def test_cosine_is_one_on_a_constant_clip_and_less_on_a_varying_one(mode):
    keras.utils.set_random_seed(0)
    model = compiled(sw.SidewaysModel(conv_units(), mode=mode))
    labels = np.array([1, 3, 0])
    constant = unit_cosines(model, constant_clip((3, 11, 8, 8, 3)), labels)
    np.testing.assert_allclose(constant, 1.0, atol=1e-4)
    varying = unit_cosines(model, random_clip((3, 11, 8, 8, 3)), labels)
    assert min(varying[:-1]) < 0.999


def test_callback_records_every_n_steps(tmp_path):
    keras.utils.set_random_seed(0)
    model = compiled(sw.SidewaysModel(conv_units(), mode="sideways"))
    video, labels = random_clip((3, 11, 8, 8, 3)), np.array([1, 3, 0])
    callback = PseudoGradientFidelity((video, labels), every=2, log_dir=str(tmp_path))
    model.fit(np.repeat(video, 2, 0), np.repeat(labels, 2), batch_size=1, epochs=1, verbose=0, callbacks=[callback])
    assert [step for step, _ in callback.history] == [2, 4, 6]
    assert all(len(cosines) == 5 for _, cosines in callback.history)
    assert list(tmp_path.glob("events.out.tfevents.*"))
