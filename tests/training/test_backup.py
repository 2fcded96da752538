"""Backups: a round trip restores weights and optimizer steps; a broken copy falls back to the other."""

import keras
import numpy as np
import pytest

import sideways_tf as sw
from sideways_tf.training import backup
from tests.helpers import compiled, dense_units, random_clip

VIDEO, LABELS = random_clip((4, 7, 5)), np.array([0, 1, 2, 0])


def _trained(steps: int, seed: int = 0):
    keras.utils.set_random_seed(seed)
    model = compiled(sw.SidewaysModel(dense_units(3)), keras.optimizers.Adam(0.01))
    for _ in range(steps):
        model.train_on_batch(VIDEO, LABELS)
    return model


def _fresh():
    model = compiled(sw.SidewaysModel(dense_units(3)), keras.optimizers.Adam(0.01))
    model.build(VIDEO.shape)
    return model


def test_restore_gives_back_the_weights_and_the_optimizer_steps(tmp_path):
    model = _trained(3)
    saver = backup.Backup(str(tmp_path))
    saver.set_model(model)
    saver.save()
    restored = _fresh()
    assert backup.restore(restored, str(tmp_path)) == 3
    for a, b in zip(model.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value))


def test_a_copy_broken_while_written_falls_back_to_the_previous_one(tmp_path):
    model = _trained(2)
    saver = backup.Backup(str(tmp_path))
    saver.set_model(model)
    saver.save()
    at_two = [np.array(w) for w in model.get_weights()]
    model.train_on_batch(VIDEO, LABELS)
    saver.save()
    (tmp_path / "current" / "weights.weights.h5").write_bytes(b"half written")  # killed mid-write
    restored = _fresh()
    assert backup.restore(restored, str(tmp_path)) == 2
    for a, b in zip(at_two, restored.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_nothing_to_restore_and_nothing_readable(tmp_path):
    assert backup.restore(_fresh(), str(tmp_path / "none")) == 0
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "state.json").write_text("{")
    with pytest.raises(ValueError, match="cannot resume from the backup in .*no copy is readable"):
        backup.restore(_fresh(), str(tmp_path))


def test_remaining_schedule():
    assert backup.remaining_schedule(0, 3) == (0, 3)
    assert backup.remaining_schedule(7, 3) == (2, 2)  # two epochs and one step done
    assert backup.remaining_schedule(9, 3) == (3, 3)
