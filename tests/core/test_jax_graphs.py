"""The XLA options of the package's compiled functions on NVIDIA GPUs (`core.backends.jax_graphs`)."""

import os
import types

import keras
import numpy as np
import pytest

import sideways_tf as sw
from tests.helpers import compiled, dense_units, random_clip

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX only: XLA options of `jax.jit`")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# An option any XLA platform takes, standing in for the GPU options on this CPU.
ANY_PLATFORM = {"xla_gpu_graph_min_graph_size": 1}


def test_gpu_functions_leave_convolutions_out_of_cuda_graphs_where_xla_reuses_cached_work(monkeypatch):
    import jax

    from sideways_tf.core.backends import jax_graphs

    gpu = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H200")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert jax_graphs.compiler_options(gpu) == jax_graphs.GPU_GRAPH_OPTIONS
    assert jax_graphs.compiler_options(types.SimpleNamespace(platform="cpu", device_kind="cpu")) == {}
    assert jax_graphs.compiler_options() == jax_graphs.compiler_options(jax.devices()[0])  # the default device's
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_per_fusion_autotune_cache_dir=/tmp/autotune")
    assert jax_graphs.compiler_options(gpu) == jax_graphs.CACHED_GPU_GRAPH_OPTIONS
    assert "CONVOLUTION" not in jax_graphs.CACHED_GPU_GRAPH_OPTIONS["xla_gpu_enable_command_buffer"]
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_enable_command_buffer=FUSION")  # the user's setting wins
    assert jax_graphs.compiler_options(gpu) == {"xla_gpu_graph_min_graph_size": 1}
    monkeypatch.delenv("XLA_FLAGS")
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", "/tmp/jax_cache")
    try:
        assert jax_graphs.compiler_options(gpu) == jax_graphs.CACHED_GPU_GRAPH_OPTIONS
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_compiled_functions_take_the_options_at_top_level_and_none_inside_another_trace(monkeypatch):
    import jax

    from sideways_tf.core.backends import jax_backend, jax_graphs

    monkeypatch.setattr(jax_graphs, "compiler_options", lambda device=None: ANY_PLATFORM)
    double = jax_backend.compile_function(lambda x: 2.0 * x)
    assert double.graphs is not double.plain and double.__wrapped__(1.0) == 2.0
    assert float(double(1.0)) == 2.0
    # JAX refuses compiler options on a nested jit: inside a trace the function goes without them.
    assert float(jax.jit(lambda x: double(x) + 1.0)(1.0)) == 3.0
    assert float(jax.grad(double)(1.0)) == 2.0


def test_pseudo_gradients_inside_a_user_s_jit_equal_them_at_top_level(monkeypatch):
    import jax

    from sideways_tf.core.backends import jax_graphs

    monkeypatch.setattr(jax_graphs, "compiler_options", lambda device=None: ANY_PLATFORM)
    model = compiled(sw.SidewaysModel(dense_units(3), mode="skip_sideways"))
    video, labels = random_clip((2, 7, 5)), np.array([0, 2])
    model.build(video.shape)
    function = model.gradient_function()
    values = [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]
    top = function(*values, video, labels, None)
    inside = jax.jit(lambda params, states: function(params, states, video, labels, None))(*values)
    for a, b in zip(jax.tree.leaves(top), jax.tree.leaves(inside), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_the_docs_give_users_the_same_flags_for_fit():
    from sideways_tf.core.backends import jax_graphs

    with open(os.path.join(ROOT, "docs", "backends.md")) as f:
        text = f.read()
    for flag in jax_graphs.xla_flags().split():
        assert flag in text, flag


def _trained(mode: str, **compile_kwargs):
    model = sw.SidewaysModel(dense_units(3), mode=mode, check_finite=True)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"], **compile_kwargs)
    video, labels = random_clip((4, 7, 5)), np.array([0, 2, 1, 0])
    model.build(video.shape)
    model.set_weights([np.full(w.shape, 0.1 * (i + 1), w.dtype) for i, w in enumerate(model.get_weights())])
    history = model.fit(video, labels, batch_size=2, epochs=2, shuffle=False, verbose=0)
    return model, history.history, model.evaluate(video, labels, verbose=0), model.predict(video, verbose=0)


@pytest.mark.parametrize("mode", ["sideways", "bp"])
def test_fit_evaluate_and_predict_run_steps_compiled_with_the_options_and_train_the_same(monkeypatch, mode):
    from sideways_tf.core.backends import jax_graphs

    monkeypatch.setattr(jax_graphs, "compiler_options", lambda device=None: {})  # as on a CPU
    keras_compiled = _trained(mode)  # no options: Keras compiles the steps
    assert not keras_compiled[0].__dict__.get("_own_steps")
    monkeypatch.setattr(jax_graphs, "compiler_options", lambda device=None: ANY_PLATFORM)
    ours = _trained(mode)
    assert set(ours[0]._own_steps) == {"train", "test", "predict"}
    assert ours[0].jit_compile is True  # put back after Keras made its functions around our steps
    for a, b in zip(ours[0].get_weights(), keras_compiled[0].get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[1]["loss"], keras_compiled[1]["loss"], rtol=1e-5)
    np.testing.assert_allclose(ours[2], keras_compiled[2], rtol=1e-5)
    np.testing.assert_allclose(ours[3], keras_compiled[3], rtol=1e-5, atol=1e-6)
    assert not _trained(mode, jit_compile=False)[0].__dict__.get("_own_steps")  # the user's choice stands
