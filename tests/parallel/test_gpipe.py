"""The GPipe baseline's arguments and bubble (its gradients: `tests/core/test_stages.py`, on 4 host devices)."""

import keras
import numpy as np
import pytest

import sideways_tf as sw
from tests.helpers import compiled, dense_units, old_keras_under_jax

jax_with_devices = pytest.mark.skipif(keras.backend.backend() != "jax" or old_keras_under_jax(),
                                      reason="JAX with Keras >= 3.12 (devices= without a distribution)")


@pytest.mark.backend_independent("arithmetic")
def test_bubble_is_the_idle_fraction():
    from sideways_tf.parallel.gpipe import bubble

    assert bubble(16, 1) == 0
    assert bubble(16, 2) == pytest.approx(1 / 17)
    assert bubble(8, 8) == pytest.approx(7 / 15)


@jax_with_devices
@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="skip_sideways", devices=["cpu:0"] * 3), r"`model.mode` must be 'bp' or 'sideways' \(no shortcuts\)"),
    (dict(mode="bp"), r"pipelines the units over the model's `devices`"),
])
def test_models_it_cannot_pipeline_are_refused(kwargs, match):
    from sideways_tf.parallel import gpipe

    model = compiled(sw.SidewaysModel(dense_units(3), **kwargs))
    model.build((2, 5, 4))
    with pytest.raises(ValueError, match=match):
        gpipe.gradients(model, np.zeros((2, 5, 4), "float32"), np.array([0, 1]))


@jax_with_devices
def test_one_device_gives_bp_gradients():
    from sideways_tf.parallel import gpipe

    model = compiled(sw.SidewaysModel(dense_units(3), mode="bp", devices=["cpu:0"] * 3))
    video, labels = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32"), np.array([0, 2])
    model.build(video.shape)
    for a, b in zip(gpipe.gradients(model, video, labels), model.exact_gradients(video, labels), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.tensorflow_only("the refusal of the TensorFlow backend")
def test_tensorflow_backend_is_refused():
    from sideways_tf.parallel import gpipe

    model = compiled(sw.SidewaysModel(dense_units(3), mode="bp"))
    with pytest.raises(ValueError, match=r"runs under KERAS_BACKEND=jax; the backend is 'tensorflow'"):
        gpipe.gradient_function(model)


@pytest.mark.backend_independent("a pure schedule")
def test_clock_cycles_is_gpipe_fill_and_drain():
    from sideways_tf.core.schedule import clock_cycles

    ticks = list(clock_cycles(3, 2))
    assert ticks == [[(0, 0)], [(1, 0), (0, 1)], [(2, 0), (1, 1)], [(2, 1)],
                     [(2, 1)], [(1, 1), (2, 0)], [(0, 1), (1, 0)], [(0, 0)]]
    for frames, groups in ((5, 3), (8, 4), (2, 4)):
        ticks = list(clock_cycles(frames, groups))
        phases = ticks[:frames + groups - 1], ticks[frames + groups - 1:]
        assert len(phases[1]) == frames + groups - 1
        for phase, below in zip(phases, (lambda g: g - 1, lambda g: g + 1), strict=True):
            when = {work: t for t, tick in enumerate(phase) for work in tick}
            assert sorted(when) == [(m, g) for m in range(frames) for g in range(groups)]  # each once
            for (m, g), t in when.items():  # after the group that feeds it, on the same frame
                if (m, below(g)) in when:
                    assert when[(m, below(g))] < t
        # The busy fraction is GPipe's: 1 - bubble.
        from sideways_tf.parallel.gpipe import bubble

        busy = sum(len(tick) for tick in phases[0]) / (groups * len(phases[0]))
        assert busy == pytest.approx(1 - bubble(frames, groups))


@jax_with_devices
def test_runtime_is_checked():
    from sideways_tf.parallel import gpipe

    model = compiled(sw.SidewaysModel(dense_units(3), mode="bp", devices=["cpu:0"] * 3))
    model.build((2, 5, 4))
    with pytest.raises(ValueError, match=r"`runtime` must be one of \('auto', 'programs', 'mesh'\); got 'spmd'"):
        gpipe.gradient_function(model, "spmd")
