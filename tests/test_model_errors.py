"""Bad input raises ValueError naming the argument and what is allowed."""

import re
import warnings

import keras
import numpy as np
import pytest

import sideways_tf as sw
from tests.helpers import SPARSE_CE, compiled, conv_units, dense_units, random_clip


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mode": "backprop"}, r"`mode` must be one of 'bp', 'sideways', 'skip_sideways', 'fa_skip_sideways'"),
     ({"fusion": "mul"}, r"`fusion` must be one of 'concat', 'add'"),
     ({"shortcut": "conv"}, r"`shortcut` must be one of 'auto', 'maxpool'"),
     ({"devices": ["/CPU:0"]}, r"`devices` must be None, 'auto' or a list of 3 device strings"),
     ({"devices": "/CPU:0"}, r"`devices` must be None, 'auto' or a list of 3"),
     ({"devices": ["/CPU:0", "/CPU:0", 0]}, r"`devices`")],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sw.SidewaysModel(dense_units(3), **kwargs)


def test_bad_units():
    with pytest.raises(ValueError, match="`units` must be a non-empty list"):
        sw.SidewaysModel([])
    with pytest.raises(ValueError, match="`units` must be a non-empty list"):
        sw.SidewaysModel(keras.layers.Dense(3))
    with pytest.raises(ValueError, match=r"`units\[1\]` must be a keras.layers.Layer"):
        sw.SidewaysModel([keras.layers.Dense(3), "dense"])


@pytest.mark.parametrize("mode", ["sideways", "skip_sideways", "fa_skip_sideways"])
def test_clip_too_short_names_t_d_and_minimum(mode):
    model = compiled(sw.SidewaysModel(dense_units(4), mode=mode))
    video, labels = random_clip((2, 6, 5)), np.array([0, 1])
    with pytest.raises(ValueError, match=r"T=6 frames.*4-unit model.*at least 7 frames"):
        model.fit(video, labels, verbose=0)
    with pytest.raises(ValueError, match=r"T=6.*at least 7"):
        model.pseudo_gradients(video, labels)
    with pytest.raises(ValueError, match=r"T=3.*at least 4"):
        model.predict(random_clip((2, 3, 5)), verbose=0)


def test_bp_accepts_a_single_frame():
    model = compiled(sw.SidewaysModel(dense_units(4), mode="bp"))
    model.fit(random_clip((2, 1, 5)), np.array([0, 1]), verbose=0)


def test_video_shape_differs_from_built_shape():
    model = compiled(sw.SidewaysModel(conv_units(), mode="sideways"))
    model.fit(random_clip((2, 9, 8, 8, 3)), np.array([0, 1]), verbose=0)
    with pytest.raises(ValueError, match=r"video shape \(2, 9, 16, 16, 3\).*\(None, None, 8, 8, 3\)"):
        model.predict(random_clip((2, 9, 16, 16, 3)), verbose=0)
    with pytest.raises(ValueError, match=r"video shape \(2, 9, 8, 8\).*\(None, None, 8, 8, 3\)"):
        model.pseudo_gradients(random_clip((2, 9, 8, 8)), np.array([0, 1]))


def test_video_rank_too_small():
    model = compiled(sw.SidewaysModel(dense_units(2), mode="sideways"))
    with pytest.raises(ValueError, match=r"rank >= 3"):
        model.build((2, 5))


def test_shortcut_that_cannot_match_names_the_argument():
    units = [keras.layers.Dense(4), keras.layers.Dense(6), keras.layers.Dense(3)]
    model = compiled(sw.SidewaysModel(units, mode="skip_sideways", fusion="add", shortcut="tile"))
    with pytest.raises(ValueError, match=r"shortcut='tile'.*multiple"):
        model.build((2, 5, 4))


def test_gradients_need_compile():
    model = sw.SidewaysModel(dense_units(2), mode="sideways")
    with pytest.raises(ValueError, match="compile"):
        model.pseudo_gradients(random_clip((2, 5, 4)), np.array([0, 1]))


def test_short_clips_of_unknown_length_are_refused_at_run_time():
    tf = pytest.importorskip("tensorflow", reason="tf.data with a time axis unknown while tracing")

    model = sw.SidewaysModel(dense_units(3), mode="sideways")
    model.compile(optimizer="sgd", loss=SPARSE_CE)

    def clips():
        for _ in range(2):
            yield np.zeros((2, 3, 6), "float32"), np.zeros((2,), "int64")

    data = tf.data.Dataset.from_generator(clips, output_signature=(
        tf.TensorSpec((2, None, 6), tf.float32), tf.TensorSpec((2,), tf.int64)))
    # The run-time check's message is the error's first line, as the static check's is.
    with pytest.raises(ValueError, match=r"^clip too short: .*mode '?sideways'? needs at least 5 frames for every"):
        model.fit(data, epochs=1, verbose=0)
    short = data.map(lambda v, y: (v[:, :2], y))
    with pytest.raises(ValueError, match=r"^clip too short: .*needs at least 3 frames for one prediction"):
        model.evaluate(short, verbose=0)
    with pytest.raises(ValueError, match=r"^clip too short: .*needs at least 3 frames for one prediction"):
        model.predict(short.map(lambda v, y: v), verbose=0)


@pytest.mark.parametrize("mode", ["skip_sideways", "fa_skip_sideways"])
def test_skip_modes_with_two_units_have_no_shortcut_and_are_refused(mode):
    with pytest.raises(ValueError, match=rf"mode='{mode}' .* needs at least 3 units; with 2 there is none"):
        sw.SidewaysModel(dense_units(2), mode=mode)


@pytest.mark.tensorflow_only("devices= places units with tf.device")
def test_devices_that_do_not_exist_are_named():
    with pytest.raises(ValueError, match=r"devices\[2\]='/GPU:7' names no device on this machine"):
        sw.SidewaysModel(dense_units(3), devices=["/CPU:0", "/CPU:1", "/GPU:7"])


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 5]), r"labels must be class ids in \[0, 3\) for the model's 3 outputs; got values from 0 to 5"),
    (np.array([-1, 2]), r"class ids in \[0, 3\).*from -1 to 2"),
    (np.zeros((2, 4), "int32"), r"\(2, 4\) do not fit a class-id loss.*\[B\] \(class ids per clip\) or \[B, T\].*T=7"),
])
def test_bad_class_id_labels_are_named_before_training(labels, match):
    model = compiled(sw.SidewaysModel(dense_units(3)))
    video = random_clip((2, 7, 5))
    with pytest.raises(ValueError, match=match):
        model.fit(video, labels, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.train_on_batch(video, labels)


def test_dense_targets_of_the_wrong_shape_are_named():
    model = sw.SidewaysModel(dense_units(3))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"labels of shape \(2, 4\) do not fit predictions of shape \(3,\)"):
        model.fit(random_clip((2, 7, 5)), np.zeros((2, 4), "float32"), verbose=0)


def test_sample_weight_of_the_wrong_shape_is_named():
    model = compiled(sw.SidewaysModel(dense_units(3)))
    with pytest.raises(ValueError, match=r"sample_weight of shape \(2, 3\): expected \[B\].*\[B, T=7\]"):
        model.fit(random_clip((2, 7, 5)), np.array([0, 1]), sample_weight=np.ones((2, 3)), verbose=0)


@pytest.mark.tensorflow_only("a tf.data dataset of dicts")
def test_a_dataset_of_feature_dicts_says_how_to_map_it():
    import tensorflow as tf

    model = compiled(sw.SidewaysModel(dense_units(3)))
    dataset = tf.data.Dataset.from_tensor_slices({"video": random_clip((2, 7, 5)), "label": np.array([0, 1])})
    with pytest.raises(ValueError, match=r"yields dicts with keys \['label', 'video'\].*dataset.map\(lambda e"):
        model.fit(dataset.batch(2), verbose=0)


def test_a_unit_that_cannot_take_its_fused_input_is_named():
    units = [keras.layers.Dense(4), keras.layers.Dense(4), keras.layers.Dense(4), keras.layers.Dense(3)]
    units[2].build((None, 4))  # built for the direct input only: concat widens it to 8
    model = sw.SidewaysModel(units, mode="skip_sideways", fusion="concat")
    with pytest.raises(ValueError, match=r"units\[2\] \(dense_\d+\) cannot take its input of shape \(None, 4\) "
                                         r"\(from units\[1\]\) with the shortcut from units\[0\] .*concatenated"):
        model.build((2, 7, 5))


def test_a_unit_that_pools_too_far_is_named_with_its_layer_and_no_keras_warning():
    units = [keras.layers.Conv2D(4, 3, strides=2, padding="same"),
             keras.Sequential([keras.layers.MaxPooling2D(2), keras.layers.Flatten()]), keras.layers.Dense(3)]
    model = sw.SidewaysModel(units)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError) as raised:
            model.build((2, 5, 2, 2, 3))
    message = str(raised.value)
    assert re.match(r"units\[1\] \(sequential\w*\) cannot take its input of shape \(None, 1, 1, 4\): MaxPooling2D: "
                    r"Computed output size would be zero or negative.*too many strides or pools for frames of shape "
                    r"\(2, 2, 3\)", message, flags=re.DOTALL), message
    assert "Exception encountered" not in message and "Arguments received" not in message, message
    assert not [w for w in caught if "build()" in str(w.message)], [str(w.message) for w in caught]


def test_check_finite_names_a_non_finite_input():
    model = compiled(sw.SidewaysModel(dense_units(3), check_finite=True))
    video = random_clip((2, 7, 5))
    video[1, 3, 2] = np.nan
    model.build(video.shape)
    before = model.get_weights()
    with pytest.raises(Exception, match="check_finite: the input video holds NaN or Inf"):
        model.fit(video, np.array([0, 1]), verbose=0)
    # The step stopped before its update, and the model is left usable (on GPUs too: no host callback).
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(Exception, match="check_finite: the input video holds NaN or Inf"):
        model.train_on_batch(video, np.array([0, 1]))
    model.fit(np.nan_to_num(video), np.array([0, 1]), verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_check_finite_names_the_unit_whose_gradient_is_not_finite():
    units = [keras.layers.Dense(4), keras.layers.Lambda(lambda x: keras.ops.sqrt(x)), keras.layers.Dense(3)]
    model = compiled(sw.SidewaysModel(units, check_finite=True))
    with pytest.raises(Exception, match=r"check_finite: the pseudo-gradient of units\[\d\] \(.*\) for .* holds NaN"):
        model.fit(random_clip((2, 7, 5)), np.array([0, 1]), verbose=0)


def test_without_the_checks_the_same_step_runs():
    model = compiled(sw.SidewaysModel(dense_units(3), stop_on_nonfinite_loss=False))
    video = random_clip((2, 7, 5))
    video[1, 3, 2] = np.nan
    model.fit(video, np.array([0, 1]), verbose=0)  # what the checks exist to catch
    assert not np.isfinite(model.get_weights()[0]).all()


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("cause", ["nan input", "learning rate"])
def test_a_nonfinite_loss_stops_fit_with_the_last_finite_weights(cause, jit_compile):
    # Also under XLA (TensorFlow's default on GPUs and TPUs), which compiles assertions away.
    keras.utils.set_random_seed(0)
    video, labels = random_clip((2, 7, 5)), np.array([0, 1])
    learning_rate = 1e12 if cause == "learning rate" else 0.1
    # Linear units: a learning rate too high sends the logits, then the loss, to Inf and NaN.
    model = sw.SidewaysModel([keras.layers.Dense(8), keras.layers.Dense(8), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss=SPARSE_CE, jit_compile=jit_compile)
    model.build(video.shape)
    if cause == "nan input":
        model.fit(video, labels, verbose=0)  # a finite step first
        video[1, 3, 2] = np.nan
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(FloatingPointError, match="stop_on_nonfinite_loss: the training loss became NaN or Inf"):
        model.fit(video, labels, epochs=30, verbose=0)
    weights = model.get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    if cause == "nan input":  # the NaN step was not applied
        for a, b in zip(weights, before, strict=True):
            np.testing.assert_array_equal(a, b)
    else:  # some steps were applied, then the step that blew up was not
        assert any(not np.array_equal(a, b) for a, b in zip(weights, before, strict=True))


def test_stop_on_nonfinite_loss_is_checked_and_saved():
    with pytest.raises(ValueError, match="`stop_on_nonfinite_loss` must be True or False; got 'no'"):
        sw.SidewaysModel(dense_units(3), stop_on_nonfinite_loss="no")
    model = sw.SidewaysModel(dense_units(3), stop_on_nonfinite_loss=False)
    assert sw.SidewaysModel.from_config(model.get_config()).stop_on_nonfinite_loss is False


def test_activity_regularizers_inside_units_are_refused_up_front():
    inner = keras.layers.Dense(4, activity_regularizer=keras.regularizers.L2(0.1))
    units = [keras.Sequential([keras.layers.Dense(8), inner]), keras.layers.Dense(3)]
    with pytest.raises(ValueError, match=r"units\[0\].layers\[1\] \(dense(_\d+)?\) has an activity regularizer"):
        sw.SidewaysModel(units)


def test_a_unit_listed_twice_is_refused():
    shared = keras.layers.Dense(4, activation="tanh")
    with pytest.raises(ValueError, match=r"units\[0\] and units\[1\] are the same layer object"):
        sw.SidewaysModel([shared, shared, keras.layers.Dense(3)])


def test_a_layer_shared_inside_two_units_is_refused_at_build():
    inner = keras.layers.Dense(4, activation="tanh")
    units = [keras.Sequential([inner]), keras.Sequential([inner]), keras.layers.Dense(3)]
    model = sw.SidewaysModel(units)
    with pytest.raises(ValueError, match=r"units\[0\] and units\[1\] share the variable"):
        model.build((2, 7, 4))


def test_fractional_class_ids_are_refused():
    model = compiled(sw.SidewaysModel(dense_units(3)))
    with pytest.raises(ValueError, match=r"labels must be integer class ids .* such as 1.5"):
        model.fit(random_clip((2, 7, 5)), np.array([0.0, 1.5]), verbose=0)
    model.fit(random_clip((2, 7, 5)), np.array([0.0, 2.0]), verbose=0)  # whole numbers as floats are ids


def test_fit_on_no_clips_says_so():
    model = compiled(sw.SidewaysModel(dense_units(3)))
    with pytest.raises(ValueError, match=r"fit got no clips: `x` has shape \(0, 7, 5\)"):
        model.fit(np.zeros((0, 7, 5), "float32"), np.zeros((0,), "int32"), verbose=0)


def test_fit_on_an_empty_dataset_says_so():
    tf = pytest.importorskip("tensorflow")
    model = compiled(sw.SidewaysModel(dense_units(3)))
    clips = tf.data.Dataset.from_tensor_slices((random_clip((3, 7, 5)), np.array([0, 1, 2])))
    with pytest.raises(ValueError, match=r"fit trained on nothing: the data gave no batch"):
        model.fit(clips.batch(4, drop_remainder=True), epochs=2, verbose=0)


def test_predict_and_evaluate_name_the_short_clip_first():
    model = compiled(sw.SidewaysModel(dense_units(4)))
    model.build((2, 9, 5))
    for call in (lambda: model.predict(random_clip((2, 2, 5)), verbose=0),
                 lambda: model.evaluate(random_clip((2, 2, 5)), np.array([0, 1]), verbose=0)):
        with pytest.raises(ValueError, match=r"^clip too short: T=2 frames, but a 4-unit model"):
            call()
    with pytest.raises(ValueError, match=r"^video shape \(2, 9, 6\) does not match the shape the model was built on"):
        model.predict(random_clip((2, 9, 6)), verbose=0)


def test_legacy_hdf5_save_names_the_formats_that_work(tmp_path):
    model = compiled(sw.SidewaysModel(dense_units(3)))
    model.build((2, 7, 5))
    with pytest.raises(ValueError, match=r"legacy HDF5 format cannot store a SidewaysModel.*'\.keras'"):
        model.save(str(tmp_path / "model.h5"))


def test_a_batch_of_images_is_named_as_read():
    from tests.helpers import conv_units

    model = compiled(sw.SidewaysModel(conv_units()))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=r"read as B=8 clips of T=16 frames of shape \(16, 3\): clips are "
                                             r"\[B, T, H, W, C\]"):
            model.predict(random_clip((8, 16, 16, 3)), verbose=0)
    assert not [w for w in shown if "unbuilt state" in str(w.message)], [str(w.message)[:80] for w in shown]
