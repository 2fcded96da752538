"""Streaming (`docs/streaming.md`): updates every L steps, state across batches, per-slot restarts."""

import keras
import numpy as np
import pytest

import sideways_tf as sw
from tests.helpers import SPARSE_CE, compiled, constant_clip, conv_units, dense_units, random_clip

MODES = ["sideways", "skip_sideways", "fa_skip_sideways", "bp"]


def _weights(model):
    return [np.asarray(v) for v in model.trainable_variables]


def _model(mode, depth=3, seed=0, optimizer=None, **kwargs):
    keras.utils.set_random_seed(seed)
    model = sw.SidewaysModel(dense_units(depth), mode=mode, **kwargs)
    model.build((None, None, 6))
    return compiled(model, optimizer=optimizer or keras.optimizers.Adam(0.05))


def _copy_weights(source, target):
    for s, t in zip(source.weights, target.weights, strict=True):
        t.assign(np.array(s))  # a copy: JAX donates the buffers of a training step


def _assert_same_weights(first, second, tolerance=1e-5):
    for a, b in zip(_weights(first), _weights(second), strict=True):
        np.testing.assert_allclose(a, b, atol=tolerance, rtol=tolerance)


def _trained_whole_and_fresh_stateful(mode, update_every, video, labels):
    """A model trained on the whole clip, and a stateful copy of its initial weights to feed chunks."""
    whole = _model(mode, update_every=update_every)
    chunked = _model(mode, update_every=update_every, stateful=True)
    _copy_weights(whole, chunked)
    whole.train_on_batch(video, labels)
    return whole, chunked


def _clip(frames=10, batch=2):
    video = random_clip((batch, frames, 6), seed=1)
    labels = np.random.default_rng(2).integers(0, 3, size=(batch, frames))
    return video, labels


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunks", [1, 2, 5])
def test_chunked_stream_equals_whole_clip(mode, chunks):
    video, labels = _clip(frames=10)
    whole, chunked = _trained_whole_and_fresh_stateful(mode, 2, video, labels)
    for part_video, part_labels in zip(np.split(video, chunks, axis=1), np.split(labels, chunks, axis=1), strict=True):
        chunked.train_on_batch(part_video, part_labels)
    _assert_same_weights(whole, chunked)
    assert int(np.asarray(whole.optimizer.iterations)) == int(np.asarray(chunked.optimizer.iterations)) == 5


@pytest.mark.parametrize("mode", ["sideways", "skip_sideways"])
def test_update_every_clip_length_equals_one_update_per_clip(mode):
    video, labels = _clip(frames=9)
    once = _model(mode)
    every = _model(mode, update_every=9)
    _copy_weights(once, every)
    once.train_on_batch(video, labels)
    every.train_on_batch(video, labels)
    _assert_same_weights(once, every, tolerance=1e-6)


def test_update_every_one_is_per_frame_sgd_for_one_unit():
    """D = 1 on a constant clip: one SGD step per frame of exact backprop."""
    video = constant_clip((2, 4, 6))
    labels = np.array([0, 2])
    model = _model("sideways", depth=1, optimizer=keras.optimizers.SGD(0.3), update_every=1)
    reference = _model("bp", depth=1, optimizer=keras.optimizers.SGD(0.3))
    _copy_weights(model, reference)
    model.train_on_batch(video, labels)
    for _ in range(4):
        reference.train_on_batch(video[:, :1], labels)
    _assert_same_weights(model, reference)


def test_units_without_counted_steps_keep_their_weights():
    """With L = 1 the bottom unit of a D = 3 pipeline first counts at step 2D - 2 = 4."""
    video, labels = _clip(frames=4)
    model = _model("sideways", optimizer=keras.optimizers.SGD(0.1), update_every=1, stateful=True)
    before = _weights(model)
    model.train_on_batch(video, labels)
    after = _weights(model)
    bottom = [id(v) for v in model.stages[0].trainable_variables]
    top = [id(v) for v in model.stages[2].trainable_variables]
    for v, a, b in zip(model.trainable_variables, before, after, strict=True):
        if id(v) in bottom:
            np.testing.assert_array_equal(a, b)
        if id(v) in top:
            assert np.abs(a - b).max() > 0


def test_restart_refills_one_slot_and_leaves_the_others():
    depth, frames = 3, 8
    video, labels = _clip(frames=frames, batch=3)
    model = _model("sideways", depth=depth, optimizer=keras.optimizers.SGD(0.0), stateful=True)
    undisturbed = _model("sideways", depth=depth, optimizer=keras.optimizers.SGD(0.0), stateful=True)
    _copy_weights(model, undisturbed)
    for m in (model, undisturbed):
        m.train_on_batch(video, labels)
    restart = np.array([False, True, False])
    model.train_on_batch({"video": video, "restart": restart}, labels)
    undisturbed.train_on_batch(video, labels)
    state = model.stream_state.value()
    np.testing.assert_array_equal(np.asarray(state.pipe.steps), [2 * frames, frames, 2 * frames])
    # The other slots carry on exactly as without the restart.
    for ours, theirs in zip(state.pipe.activations + state.pipe.gradients,
                            undisturbed.stream_state.value().pipe.activations
                            + undisturbed.stream_state.value().pipe.gradients, strict=True):
        np.testing.assert_allclose(np.asarray(ours)[[0, 2]], np.asarray(theirs)[[0, 2]], atol=1e-6)
    # Per-slot validity: the restarted slot's first valid output comes D - 1 steps after the restart.
    outputs = model.clip_gradients(
        [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
        video, labels, stream=model.stream_state.value(), starts=np.stack([restart] + [[False] * 3] * (frames - 1), 1),
        flush=False,
    ).episode.output_valid
    valid = np.asarray(outputs)
    assert valid[0].all() and valid[2].all()
    np.testing.assert_array_equal(valid[1], np.arange(frames) >= depth - 1)


def test_restarted_slot_trains_like_a_fresh_stream():
    """Slot 1 restarted mid-stream gets the same gradients as the same video in a fresh model."""
    video, labels = _clip(frames=6, batch=2)
    other = random_clip((2, 6, 6), seed=7)
    streaming = _model("skip_sideways", optimizer=keras.optimizers.SGD(0.0), stateful=True)
    fresh = _model("skip_sideways", optimizer=keras.optimizers.SGD(0.0))
    _copy_weights(streaming, fresh)
    streaming.train_on_batch(other, labels)  # both slots are mid-stream now
    params = [v.value for v in streaming.trainable_variables]
    states = [v.value for v in streaming.non_trainable_variables]
    both = np.array([True, True])
    starts = np.stack([both] + [[False, False]] * 5, 1)
    restarted = streaming.clip_gradients(params, states, video, labels, stream=streaming.stream_state.value(),
                                         starts=starts, flush=False).gradients
    reference = fresh.pseudo_gradients(video, labels)
    for a, b in zip(restarted, reference, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_reset_state_restarts_every_stream():
    video, labels = _clip(frames=5)
    model = _model("sideways", stateful=True)
    model.train_on_batch(video, labels)
    assert np.asarray(model.stream_state.value().pipe.steps).tolist() == [5, 5]
    model.reset_state()
    assert np.asarray(model.stream_state.value().pipe.steps).tolist() == [0, 0]


def test_stateful_chunks_with_batch_norm():
    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(conv_units(), mode="skip_sideways", update_every=3, stateful=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SPARSE_CE, metrics=["accuracy"])
    video = random_clip((2, 24, 8, 8, 3))
    labels = np.random.default_rng(0).integers(0, 5, size=(2, 24))
    for i in range(0, 24, 6):
        logs = model.train_on_batch(video[:, i:i + 6], labels[:, i:i + 6], return_dict=True)
    assert np.isfinite(logs["loss"]) and 0.0 <= logs["accuracy"] <= 1.0
    assert np.asarray(model.stream_state.value().pipe.steps).tolist() == [24, 24]


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="`update_every` must be None or a positive int"):
        sw.SidewaysModel(dense_units(2), update_every=0)
    with pytest.raises(ValueError, match="`stateful` must be True or False"):
        sw.SidewaysModel(dense_units(2), stateful="yes")
    model = _model("sideways", stateful=True)
    video, labels = _clip(frames=4)
    model.train_on_batch(video, labels)
    with pytest.raises(ValueError, match="keeps 2 streams; got a batch of 3"):
        model.train_on_batch(random_clip((3, 4, 6)), labels[:1].repeat(3, 0))
    with pytest.raises(ValueError, match="shuffle=False"):
        model.fit(video, labels, epochs=1, batch_size=2, verbose=0)
    with pytest.raises(ValueError, match="a dict input must have the key 'video'"):
        model.train_on_batch({"clip": video}, labels)


@pytest.mark.tensorflow_only("tf.data")
def test_stateful_fit_on_a_dataset_of_chunks_equals_the_whole_clip():
    import tensorflow as tf

    video, labels = _clip(frames=12)
    whole, chunked = _trained_whole_and_fresh_stateful("skip_sideways", 3, video, labels)
    # Dataset elements are time chunks of the same 2 streams, batched as [B, T/4, ...].
    chunks = tf.data.Dataset.from_tensor_slices(
        (np.stack(np.split(video, 4, axis=1)), np.stack(np.split(labels, 4, axis=1)))
    )
    chunked.fit(chunks, epochs=1, verbose=0)
    _assert_same_weights(whole, chunked)


@pytest.mark.parametrize("mode", MODES)
def test_stream_step_frame_by_frame_equals_predict(mode):
    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(conv_units(), mode=mode)
    video = random_clip((2, 7, 8, 8, 3))
    expected = np.asarray(model.predict(video, verbose=0))
    latency = 0 if mode == "bp" else model.depth - 1
    state = model.init_states(2)
    predictions = []
    for s in range(video.shape[1]):
        prediction, state = model.stream_step(video[:, s], state)
        if s >= latency:
            predictions.append(np.asarray(prediction))
    np.testing.assert_allclose(np.stack(predictions, 1), expected, atol=1e-5, rtol=1e-5)
    assert np.asarray(state["steps"]).tolist() == [7, 7]


def test_stream_step_uses_the_weights_as_they_are_now():
    """Weights changed between frames (training, `set_weights`, a unit frozen) reach the next frame."""
    keras.utils.set_random_seed(0)
    model = compiled(sw.SidewaysModel(conv_units(), mode="sideways"))
    model.build((None, None, 8, 8, 3))
    video, labels = random_clip((2, 9, 8, 8, 3)), np.zeros((2, 9), "int32")
    state = model.init_states(2)
    for s in range(3):
        _, state = model.stream_step(video[:, s], state)

    def next_prediction():
        return np.asarray(model.stream_step(video[:, 3], state)[0])

    before = next_prediction()
    np.testing.assert_array_equal(next_prediction(), before)  # the same weights, the same prediction
    model.train_on_batch(video, labels)
    trained = next_prediction()
    assert np.abs(trained - before).max() > 1e-4
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    np.testing.assert_array_equal(next_prediction(), np.zeros_like(trained))
    model.frame_units[0].trainable = False
    np.testing.assert_array_equal(next_prediction(), np.zeros_like(trained))


def test_init_state_is_a_deprecated_alias_of_init_states():
    model = sw.SidewaysModel(conv_units(), mode="sideways")
    model.build((None, None, 8, 8, 3))
    with pytest.warns(DeprecationWarning, match="use init_states"):
        old = model.init_state(2)
    new = model.init_states(2)
    assert sorted(old) == sorted(new)
    for name in new:
        np.testing.assert_array_equal(np.asarray(old[name]), np.asarray(new[name]))


_LOAD_AND_STREAM = """
import sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
video = np.load(sys.argv[2])
state = loaded.init_states(tf.constant(video.shape[0]))
outputs = []
for s in range(video.shape[1]):
    state = loaded.stream_step(tf.constant(video[:, s]), state)
    outputs.append(state.pop("prediction").numpy())
np.save(sys.argv[3], np.stack(outputs, 1))
np.save(sys.argv[4], loaded.serve(tf.constant(video)).numpy())
assert not any(name.startswith("sideways_tf") for name in sys.modules), "sideways_tf was imported"
"""


@pytest.mark.tensorflow_only("a TensorFlow SavedModel")
@pytest.mark.parametrize("mode", ["skip_sideways", "bp"])
def test_exported_saved_model_streams_without_the_package(mode, tmp_path):
    import os
    import subprocess
    import sys

    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(conv_units(), mode=mode)
    video = random_clip((2, 6, 8, 8, 3))
    expected = np.asarray(model.predict(video, verbose=0))
    model.export(str(tmp_path / "saved"), verbose=False)
    np.save(tmp_path / "video.npy", video)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", _LOAD_AND_STREAM, str(tmp_path / "saved"), str(tmp_path / "video.npy"),
                    str(tmp_path / "stream.npy"), str(tmp_path / "serve.npy")],
                   check=True, cwd=str(tmp_path), env=env, capture_output=True)
    latency = 0 if mode == "bp" else model.depth - 1
    np.testing.assert_allclose(np.load(tmp_path / "stream.npy")[:, latency:], expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "serve.npy"), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.tensorflow_only("a TensorFlow SavedModel")
def test_export_says_what_it_wrote_in_a_few_lines(tmp_path, capsys):
    model = sw.SidewaysModel(dense_units(3))
    model.build((2, 7, 5))
    model.export(str(tmp_path / "saved"))
    printed = capsys.readouterr().out
    assert "serve(video [B, T, 5]) -> [B, T', 3]" in printed
    assert "stream_step(frame [B, 5], state) -> {prediction [B, 3], h0, h1, steps}" in printed
    assert "Captures" not in printed and "tf.resource" not in printed and len(printed.splitlines()) <= 5
    model.export(str(tmp_path / "quiet"), verbose=False)
    assert capsys.readouterr().out == ""


def test_weight_regularizers_enter_each_update_once():
    def units():
        l2 = keras.regularizers.L2(0.5)
        return [keras.layers.Dense(8, activation="tanh", kernel_regularizer=l2),
                keras.layers.Dense(8, activation="tanh", kernel_regularizer=l2),
                keras.layers.Dense(3, kernel_regularizer=l2)]

    video, labels = _clip(frames=6)
    models = []
    for update_every in (None, 6):
        keras.utils.set_random_seed(0)
        model = sw.SidewaysModel(units(), mode="skip_sideways", update_every=update_every)
        model.build((None, None, 6))
        models.append(compiled(model, optimizer=keras.optimizers.SGD(0.1)))
    _copy_weights(models[0], models[1])
    for model in models:
        model.train_on_batch(video, labels)
    _assert_same_weights(models[0], models[1], tolerance=1e-6)


def test_stateful_fit_on_arrays_of_consecutive_chunks_equals_the_whole_clip():
    video, labels = _clip(frames=12)
    whole, chunked = _trained_whole_and_fresh_stateful("sideways", 2, video, labels)
    # Rows [2k, 2k + 1] are chunk k of the two streams: batch_size=2 without shuffling feeds them in order.
    x = np.concatenate(np.split(video, 4, axis=1))
    y = np.concatenate(np.split(labels, 4, axis=1))
    chunked.fit(x, y, batch_size=2, shuffle=False, epochs=1, verbose=0)
    _assert_same_weights(whole, chunked)


def test_stateful_fit_on_a_generator_of_frames_equals_the_whole_clip():
    """A live source as a Python generator (one frame a batch, shuffle left at Keras' default, which a generator
    ignores): its first batch makes the stream state and is trained on like the others."""
    video, labels = _clip(frames=12)
    whole, chunked = _trained_whole_and_fresh_stateful("skip_sideways", 3, video, labels)
    frames = ((video[:, s:s + 1], labels[:, s:s + 1]) for s in range(12))
    history = chunked.fit(frames, steps_per_epoch=12, epochs=1, verbose=0).history
    assert len(history["loss"]) == 1
    _assert_same_weights(whole, chunked)
    with pytest.raises(ValueError, match="pass shuffle=False"):  # arrays: Keras would shuffle their order
        chunked.fit(video, labels, batch_size=2, epochs=1, verbose=0)


def test_a_saved_stateful_model_loads_and_starts_its_streams_afresh(tmp_path):
    video, labels = _clip(frames=6)
    model = _model("skip_sideways", update_every=2, stateful=True)
    model.train_on_batch(video, labels)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.stateful and loaded.update_every == 2 and not loaded.stream_state.created
    for a, b in zip(_weights(model), _weights(loaded), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.asarray(loaded.predict(video, verbose=0)),
                               np.asarray(model.predict(video, verbose=0)), atol=1e-6)
    loaded.compile(optimizer=keras.optimizers.Adam(0.05), loss=SPARSE_CE)
    loaded.train_on_batch(video, labels)
    assert np.asarray(loaded.stream_state.value().pipe.steps).tolist() == [6, 6]


@pytest.mark.tensorflow_only("tf.distribute")
@pytest.mark.parametrize("mode", ["sideways", "skip_sideways"])
def test_stateful_streams_under_mirrored_strategy_match_one_device(mode, mirrored_strategy):
    """Each replica keeps the streams of its share of the batch between chunks: the updates are one device's."""
    video, labels = _clip(frames=10, batch=4)
    single = _model(mode, stateful=True)
    with mirrored_strategy.scope():
        mirrored = _model(mode, stateful=True)
    _copy_weights(single, mirrored)
    for part_video, part_labels in zip(np.split(video, 2, axis=1), np.split(labels, 2, axis=1), strict=True):
        single.train_on_batch(part_video, part_labels)
        mirrored.train_on_batch(part_video, part_labels)
    _assert_same_weights(single, mirrored)


def test_stream_slots_are_per_replica_variables():
    """keras-team/keras#20601: state that TPUStrategy must not mirror says so (read and written locally)."""
    model = _model("sideways", stateful=True)
    video, labels = _clip()
    model.train_on_batch(video[:, :5], labels[:, :5])
    assert model.stream_state.slots
    for slot in model.stream_state.slots:
        assert (slot.synchronization, slot.aggregation, slot.trainable) == ("on_read", "only_first_replica", False)
