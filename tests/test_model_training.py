"""`fit`, `evaluate`, `predict`, distribution and device placement."""

import keras
import numpy as np
import pytest
from keras import ops

import sideways_tf as sw
from tests.helpers import SPARSE_CE, compiled, conv_units, dense_units, random_clip


def _learnable_task(num_clips=64, frames=9, dim=6, classes=3, seed=0):
    """Clips that drift slowly around a class prototype: a frame model can learn them."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(classes, dim)) * 2.0
    labels = rng.integers(0, classes, size=num_clips)
    drift = np.cumsum(rng.normal(scale=0.1, size=(num_clips, frames, dim)), axis=1)
    video = prototypes[labels][:, None, :] + drift + rng.normal(scale=0.3, size=(num_clips, frames, dim))
    return video.astype("float32"), labels


@pytest.mark.parametrize("mode", sw.MODES)
def test_fit_lowers_the_loss(mode):
    video, labels = _learnable_task()
    keras.utils.set_random_seed(0)
    model = compiled(sw.SidewaysModel(dense_units(4), mode=mode), keras.optimizers.Adam(1e-2), ["accuracy"])
    history = model.fit(video, labels, batch_size=16, epochs=12, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] > 0.8
    loss, accuracy = model.evaluate(video, labels, batch_size=16, verbose=0)
    assert accuracy > 0.8


def test_predict_shapes_and_evaluate_on_conv_frames():
    video = random_clip((4, 10, 8, 8, 3))
    labels = np.array([0, 1, 2, 3])
    for mode, frames in [("bp", 10), ("sideways", 6), ("skip_sideways", 6)]:
        model = compiled(sw.SidewaysModel(conv_units(), mode=mode), metrics=["accuracy"])
        assert model.predict(video, verbose=0).shape == (4, frames, 5)
        logs = model.evaluate(video, labels, verbose=0, return_dict=True)
        assert set(logs) == {"loss", "accuracy"}


def test_uint8_clips_and_per_frame_targets_train():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, size=(4, 9, 8, 8, 3), dtype=np.uint8)
    frame_labels = rng.integers(0, 5, size=(4, 9))
    model = compiled(sw.SidewaysModel(conv_units(), mode="skip_sideways"), metrics=["accuracy"])
    logs = model.fit(video, frame_labels, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    logs = model.evaluate(video, frame_labels, verbose=0, return_dict=True)
    assert 0.0 <= logs["accuracy"] <= 1.0


@pytest.mark.parametrize("mode", sw.MODES)
def test_regularizer_gradient_is_added_once(mode):
    video, labels = random_clip((2, 7, 4)), np.array([0, 1])

    def units(regularizer):
        return [keras.layers.Dense(3, kernel_initializer="ones", kernel_regularizer=regularizer) for _ in range(3)]

    plain = compiled(sw.SidewaysModel(units(None), mode=mode))
    regularized = compiled(sw.SidewaysModel(units(keras.regularizers.L2(0.5)), mode=mode))
    pairs = zip(regularized.pseudo_gradients(video, labels), plain.pseudo_gradients(video, labels), strict=True)
    for with_reg, without in pairs:
        if with_reg.shape == (3,):
            continue  # biases carry no penalty
        # d/dW of 0.5 * sum(W^2) is W = ones.
        np.testing.assert_allclose(np.asarray(with_reg) - without, np.ones(with_reg.shape), rtol=1e-5, atol=1e-6)


@pytest.mark.tensorflow_only("tf.distribute")
@pytest.mark.parametrize("mode", ["bp", "skip_sideways"])
def test_mirrored_strategy_step_matches_one_device(mode, mirrored_strategy):
    video, labels = random_clip((4, 9, 8, 8, 3)), np.array([0, 1, 2, 3])
    keras.utils.set_random_seed(0)
    single = compiled(sw.SidewaysModel(conv_units(batch_norm=False), mode=mode), keras.optimizers.SGD(0.5))
    single.build(video.shape)
    initial = single.get_weights()
    with mirrored_strategy.scope():
        mirrored = compiled(sw.SidewaysModel(conv_units(batch_norm=False), mode=mode), keras.optimizers.SGD(0.5))
        mirrored.build(video.shape)
        mirrored.set_weights(initial)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((video, labels)).batch(4)
    single_logs = single.fit(dataset, epochs=1, verbose=0).history
    mirrored_logs = mirrored.fit(dataset, epochs=1, verbose=0).history
    for a, b, before in zip(single.get_weights(), mirrored.get_weights(), initial, strict=True):
        assert not np.allclose(a, before)
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(single_logs["loss"], mirrored_logs["loss"], rtol=1e-5)


@pytest.mark.tensorflow_only("tf.distribute")
@pytest.mark.parametrize("mode", ["bp", "skip_sideways"])
def test_mirrored_strategy_keeps_every_replicas_copy_identical(mode, mirrored_strategy):
    """Each replica sees half the batch; its batch-norm statistics are averaged, not kept apart."""
    import tensorflow as tf

    video, labels = random_clip((4, 9, 8, 8, 3)), np.array([0, 1, 2, 3])
    with mirrored_strategy.scope():
        model = compiled(sw.SidewaysModel(conv_units(batch_norm=True), mode=mode), keras.optimizers.SGD(0.5))
        model.build(video.shape)
    before = [v.numpy() for v in model.non_trainable_variables]
    model.fit(tf.data.Dataset.from_tensor_slices((video, labels)).batch(4).repeat(2), epochs=1, verbose=0)
    for variable in model.variables:
        copies = [np.asarray(c) for c in mirrored_strategy.experimental_local_results(variable.value)]
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0], copies[1], err_msg=variable.path)
    assert not np.allclose(before[0], model.non_trainable_variables[0].numpy())  # the statistics did move


def _while_body_nodes(concrete_function):
    library = concrete_function.graph.as_graph_def().library
    bodies = [f for f in library.function if "while_body" in f.signature.name]
    assert bodies, "the frame loop is not a tf.while_loop"
    return [node for f in bodies for node in f.node_def]


@pytest.mark.tensorflow_only("devices= places units with tf.device")
@pytest.mark.parametrize("mode", ["sideways", "skip_sideways"])
def test_devices_place_each_units_forward_and_vjp(mode):
    devices = ["/CPU:0", "/CPU:1", "/CPU:0", "/CPU:1"]
    model = compiled(sw.SidewaysModel(dense_units(4), mode=mode, devices=devices))
    video, labels = ops.convert_to_tensor(random_clip((2, 9, 6))), ops.convert_to_tensor(np.array([0, 1]))
    model.build(video.shape)
    params = [ops.convert_to_tensor(v.value) for v in model.trainable_variables]
    nodes = _while_body_nodes(model.gradient_function().get_concrete_function(params, [], video, labels, None))
    seen = {k: {"forward": 0, "vjp": 0} for k in range(4)}
    for node in nodes:
        for k in range(4):
            if f"stage_{k}" in node.name and node.op not in ("ReadVariableOp", "Const", "NoOp"):
                assert node.device.endswith(devices[k].lstrip("/").replace("CPU", "device:CPU")), node.name
                seen[k]["vjp" if node.name.startswith("gradient_tape") else "forward"] += 1
    assert all(counts["forward"] and counts["vjp"] for counts in seen.values()), seen
    grads = model.pseudo_gradients(video, labels)
    unplaced = compiled(sw.SidewaysModel(dense_units(4), mode=mode))
    unplaced.build(video.shape)
    unplaced.set_weights(model.get_weights())
    for a, b in zip(grads, unplaced.pseudo_gradients(video, labels), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.tensorflow_only("devices= places units with tf.device")
def test_fit_with_devices_runs():
    video, labels = _learnable_task(num_clips=8)
    model = compiled(sw.SidewaysModel(dense_units(2), mode="sideways", devices=["/CPU:0", "/CPU:1"]))
    assert np.isfinite(model.fit(video, labels, batch_size=4, verbose=0).history["loss"][0])


def test_save_and_load_round_trip(tmp_path):
    video = random_clip((2, 9, 8, 8, 3))
    model = compiled(sw.SidewaysModel(conv_units(), mode="skip_sideways", fusion="add"))
    model.fit(video, np.array([0, 1]), verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, custom_objects={"SidewaysModel": sw.SidewaysModel})
    np.testing.assert_allclose(loaded.predict(video, verbose=0), model.predict(video, verbose=0), atol=1e-6)
    assert loaded.mode == "skip_sideways" and loaded.fusion == "add"
    assert SPARSE_CE is not None
