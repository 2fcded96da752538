"""XLA on TensorFlow, mixed precision on both backends, and the input kinds Keras accepts."""

import contextlib

import keras
import numpy as np
import pytest
from keras import ops

import sideways_tf as sw
from tests.helpers import SPARSE_CE, assert_grads_close, compiled, conv_units, dense_units, random_clip

LABELS = np.array([1, 3, 0])


def _model(mode, jit_compile="auto", seed=0, units=conv_units, **kwargs):
    keras.utils.set_random_seed(seed)
    model = sw.SidewaysModel(units(), mode=mode, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=SPARSE_CE, metrics=["accuracy"], jit_compile=jit_compile)
    return model


@pytest.mark.tensorflow_only("jit_compile is a choice under TensorFlow; JAX always compiles with XLA")
@pytest.mark.parametrize("mode", sw.MODES)
def test_xla_equals_graph_mode_in_every_mode(mode):
    video = random_clip((3, 9, 8, 8, 3))
    graph = _model(mode, jit_compile=False, fusion="add")
    xla = _model(mode, jit_compile=True, fusion="add")
    graph.build(video.shape)
    xla.build(video.shape)
    xla.set_weights(graph.get_weights())
    assert xla.jit_compile is True and graph.jit_compile is False
    # The gradient function really is an XLA program.
    params = [ops.convert_to_tensor(v.value) for v in xla.trainable_variables]
    states = [ops.convert_to_tensor(v.value) for v in xla.non_trainable_variables]
    hlo = xla.gradient_function().experimental_get_compiler_ir(params, states, ops.convert_to_tensor(video),
                                                               ops.convert_to_tensor(LABELS), None)(stage="hlo")
    assert "HloModule" in hlo and "while" in hlo
    assert_grads_close(xla.pseudo_gradients(video, LABELS), graph.pseudo_gradients(video, LABELS))
    assert_grads_close(xla.exact_gradients(video, LABELS), graph.exact_gradients(video, LABELS))
    logs = [m.train_on_batch(video, LABELS, return_dict=True) for m in (graph, xla)]
    np.testing.assert_allclose(logs[0]["loss"], logs[1]["loss"], rtol=1e-5)
    assert_grads_close(xla.get_weights(), graph.get_weights())
    np.testing.assert_allclose(xla.predict(video, verbose=0), graph.predict(video, verbose=0), atol=1e-5)


@pytest.mark.parametrize("mode", sw.MODES)
def test_steps_per_execution_four_equals_one_in_every_mode(mode):
    """Several steps per compiled call (what TPUs need) change nothing: weights, statistics, logs."""
    video = random_clip((12, 9, 8, 8, 3))
    labels = np.arange(12) % 5
    models = []
    for steps in (1, 4):
        keras.utils.set_random_seed(0)
        model = sw.SidewaysModel(conv_units(), mode=mode)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=SPARSE_CE, steps_per_execution=steps)
        logs = model.fit(video, labels, batch_size=3, epochs=1, shuffle=False, verbose=0).history
        models.append((model, logs))
    (one, one_logs), (four, four_logs) = models
    for a, b in zip(one.get_weights(), four.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(one_logs["loss"], four_logs["loss"], rtol=1e-5)


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("mode", sw.MODES)
def test_mixed_bfloat16_trains_in_every_mode(mode, mixed_bfloat16):
    rng = np.random.default_rng(0)
    prototypes = rng.normal(size=(3, 6)) * 2.0
    labels = rng.integers(0, 3, size=48)
    video = (prototypes[labels][:, None, :] + rng.normal(scale=0.3, size=(48, 9, 6))).astype("float32")
    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(dense_units(4), mode=mode, fusion="add")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=SPARSE_CE, metrics=["accuracy"])
    history = model.fit(video, labels, batch_size=16, epochs=10, verbose=0).history
    assert model.stages[0].compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    dtype = keras.backend.standardize_dtype
    assert all(dtype(g.dtype) == "float32" for g in model.pseudo_gradients(video[:4], labels[:4]))
    assert dtype(model(video[:2]).dtype) == "bfloat16"
    assert history["loss"][-1] < 0.5 * history["loss"][0] and history["accuracy"][-1] > 0.8


def test_mixed_float16_is_refused_with_a_clear_error():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = compiled(sw.SidewaysModel(dense_units(3), mode="sideways"))
        with pytest.raises(ValueError, match="'mixed_float16' is not supported.*mixed_bfloat16"):
            model.build((2, 7, 5))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _learnable(num_clips=32, frames=7):
    rng = np.random.default_rng(1)
    prototypes = rng.normal(size=(3, 5)) * 2.0
    labels = rng.integers(0, 3, size=num_clips)
    video = prototypes[labels][:, None, :] + rng.normal(scale=0.3, size=(num_clips, frames, 5))
    return video.astype("float32"), labels


def test_fit_on_a_python_generator():
    video, labels = _learnable()

    def batches():
        while True:
            for start in range(0, len(video), 8):
                yield video[start:start + 8], labels[start:start + 8]

    model = _model("skip_sideways", units=lambda: dense_units(3))
    history = model.fit(batches(), steps_per_epoch=4, epochs=3, verbose=0).history
    assert len(history["loss"]) == 3 and np.isfinite(history["loss"]).all()
    logs = model.evaluate(batches(), steps=4, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}


def test_fit_on_a_tf_data_dataset():
    tf = pytest.importorskip("tensorflow")
    video, labels = _learnable()
    dataset = tf.data.Dataset.from_tensor_slices((video, labels)).batch(8, drop_remainder=True)
    model = _model("sideways", units=lambda: dense_units(3))
    history = model.fit(dataset, epochs=2, validation_data=dataset, verbose=0).history
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert model.predict(dataset, verbose=0).shape == (32, 5, 3)


def test_highest_precision_sets_full_float32_matmuls_and_restores_the_default():
    if keras.backend.backend() == "jax":
        import jax

        def current():
            return jax.config.jax_default_matmul_precision

        outer = jax.default_matmul_precision("default")  # the test session runs at "highest"
    else:
        import tensorflow as tf

        def current():
            return "tf32" if tf.config.experimental.tensor_float_32_execution_enabled() else "highest"

        tf.config.experimental.enable_tensor_float_32_execution(True)
        outer = contextlib.nullcontext()
    with outer:
        before = current()
        assert before != "highest"
        with sw.highest_precision():
            assert current() == "highest"
        assert current() == before
