"""The learning-rate schedules have the papers' shape."""

import numpy as np
import pytest

from sideways_tf.training.schedules import WarmupCosine, WarmupStepDecay, make_schedule


def test_warmup_then_drops_at_epochs_100_and_200():
    steps_per_epoch = 10
    schedule = make_schedule("paper", 1e-3, steps_per_epoch, 5, (100, 200), 300)
    assert isinstance(schedule, WarmupStepDecay)

    def lr(step):
        return float(schedule(step))

    assert lr(0) == pytest.approx(1e-3 / 50)        # linear warm-up over 5 epochs = 50 steps
    assert lr(24) == pytest.approx(1e-3 * 25 / 50)
    assert lr(49) == pytest.approx(1e-3) and lr(500) == pytest.approx(1e-3)
    assert lr(999) == pytest.approx(1e-3)
    assert lr(1000) == pytest.approx(1e-4)           # epoch 100
    assert lr(2000) == pytest.approx(1e-5, rel=1e-4)  # epoch 200


def test_cosine():
    schedule = make_schedule("cosine", 1.0, 10, 1, (), 11)
    assert isinstance(schedule, WarmupCosine)
    assert float(schedule(4)) == pytest.approx(0.5)      # warming up
    assert float(schedule(10)) == pytest.approx(1.0)     # warm-up done
    assert float(schedule(60)) == pytest.approx(0.5)     # half way through the cosine
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-6)
    values = [float(schedule(s)) for s in range(10, 111, 10)]
    assert np.all(np.diff(values) <= 1e-7)


def test_constant_and_unknown():
    assert make_schedule("constant", 0.1, 10, 5, (100,), 10) == 0.1
    with pytest.raises(ValueError, match="`schedule`"):
        make_schedule("linear", 0.1, 10, 5, (100,), 10)
