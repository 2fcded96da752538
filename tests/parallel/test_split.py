"""`sw.split`: a Keras model cut into units where one tensor is alive; the units equal the model."""

import keras
import numpy as np
import pytest

import sideways_tf as sw
from tests.helpers import SPARSE_CE, gradient_of, random_clip

RES = 32  # the smallest input keras.applications accepts: CI stays fast


def _residual_model():
    """conv -> [conv -> add(conv)] -> pool -> dense: no cut inside the block."""
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    inner = keras.layers.Conv2D(4, 3, padding="same", name="inner")(stem)
    block = keras.layers.Add(name="block_out")([stem, inner])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(block)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(pooled))


def _applications():
    common = dict(weights=None, input_shape=(RES, RES, 3), classes=5, classifier_activation=None)
    return {"vgg16": lambda: keras.applications.VGG16(**common),
            "resnet50": lambda: keras.applications.ResNet50(**common),
            "mobilenetv2": lambda: keras.applications.MobileNetV2(alpha=0.35, **common)}


def test_cut_points_skip_the_inside_of_a_residual_block():
    assert sw.parallel.cut_points(_residual_model()) == ["stem", "block_out", "pool"]
    chain = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4), keras.layers.Dense(4), keras.layers.Dense(2)])
    assert len(sw.parallel.cut_points(chain)) == 2


def test_no_cut_after_zero_padding():
    """As in MobileNetV2: a cut there would hand on 29x29 where the cut before hands on 28x28."""
    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Conv2D(4, 3, padding="same", name="a"),
                              keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad"),
                              keras.layers.Conv2D(4, 3, strides=2, name="b"), keras.layers.Flatten(name="flat"),
                              keras.layers.Dense(2, name="logits")])
    assert sw.parallel.cut_points(model) == ["a", "b", "flat"]


def test_a_residual_written_as_x_plus_y_is_an_operation_and_no_cut_falls_inside_it():
    """`stem + inner` is a `keras.ops` Add, not a layer (as in ConvNeXt): the block is still whole."""
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    inner = keras.layers.Conv2D(4, 3, padding="same", name="inner")(stem)
    block = stem + inner
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(block)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(pooled))
    points = sw.parallel.cut_points(model)
    assert points[0] == "stem" and points[2] == "pool" and len(points) == 3
    assert "inner" not in points  # the shortcut keeps `stem` alive inside the block
    units = sw.split(model, 2, balance=[points[1]])  # cut after the add
    frames = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(units[1](units[0](frames)), model(frames), atol=1e-6)


def test_a_nested_backbone_is_unfolded_and_cut_inside_with_its_layers_shared():
    """`Sequential([backbone, pooling, head])`, the usual transfer-learning shape: the backbone is a model
    nested as one layer; its own layers become cut points."""
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    h = keras.layers.Conv2D(4, 3, name="c2")(h)
    backbone = keras.Model(inputs, h + keras.layers.Conv2D(4, 1, name="c3")(h), name="backbone")
    model = keras.Sequential([keras.Input((8, 8, 3)), backbone, keras.layers.GlobalAveragePooling2D(name="pool"),
                              keras.layers.Dense(3, name="logits")])
    points = sw.parallel.cut_points(model)
    assert points[:2] == ["c1", "c2"] and "c3" not in points and points[-1] == "pool" and len(points) == 4
    units = sw.split(model, 5, balance="params")
    assert units[0].get_layer("c1") is backbone.get_layer("c1")  # shared, not copied
    frames = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    out = frames
    for unit in units:
        out = unit(out)
    np.testing.assert_allclose(out, model(frames), atol=1e-6)


@pytest.mark.parametrize("recorded", [False, True])
def test_an_unfolded_backbone_keeps_the_training_flag_it_was_called_with(recorded):
    """`x = base(inputs, training=...)`: each unit calls the backbone's layers as the model does, when
    called with no flag of its own (Keras' call-time flag, when given, overrides both alike)."""
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    base = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(h), name="base")
    outer = keras.Input((8, 8, 3))
    features = keras.layers.GlobalAveragePooling2D(name="pool")(base(outer, training=recorded))
    model = keras.Model(outer, keras.layers.Dense(3, name="logits")(features))
    units = sw.split(model, 3, balance=["conv", "bn"])
    frames = np.random.default_rng(0).normal(3.0, 2.0, size=(4, 8, 8, 3)).astype("float32")
    out = frames
    for unit in units:
        out = unit(out)
    np.testing.assert_allclose(out, model(frames), atol=1e-5)  # batch statistics with True, moving ones with False


def test_split_shares_the_layers_and_refuses_cuts_it_cannot_make():
    model = _residual_model()
    units = sw.split(model, 2, balance=["block_out"])
    assert [len(u.layers) for u in units] == [4, 3]  # input + stem, inner, add | input + pool, logits
    assert units[0].get_layer("stem") is model.get_layer("stem")  # shared, not copied
    with pytest.raises(ValueError, match=r"among the model's cut points \['stem', 'block_out', 'pool'\] .*"
                                         r"\['inner'\] are not cut points"):
        sw.split(model, 2, balance=["inner"])
    with pytest.raises(ValueError, match=r"`num_units` must be between 1 and 4 .*got 5"):
        sw.split(model, 5)
    with pytest.raises(ValueError, match=r"`balance` must be one of \('time', 'params', 'flops'\)"):
        sw.split(model, 2, balance="memory")
    with pytest.raises(ValueError, match=r"`frame_shape` \(16, 16, 3\) differs from the model's input shape"):
        sw.split(model, 2, frame_shape=(16, 16, 3))


def test_models_that_cannot_be_cut_are_named():
    inputs = keras.Input((4,))
    two = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(3)(inputs)])
    with pytest.raises(ValueError, match=r"one input and one output .* 1 inputs and 2 outputs"):
        sw.split(two, 2)

    class Remembers(keras.layers.Layer):
        stateful = True

        def call(self, x):
            return x

    keeps = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), Remembers(name="remembers"),
                              keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"layer 'remembers' keeps state across calls"):
        sw.split(keeps, 2)
    with pytest.raises(ValueError, match=r"must be built with a known input shape"):
        sw.split(keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)]), 2)


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "mobilenetv2"])
def test_split_applications_equal_the_original(name):
    """8 units of a keras.applications network: the same per-frame output, and "bp" training gives
    the original network's gradients on a constant clip."""
    keras.utils.set_random_seed(0)
    original = _applications()[name]()
    # Batch norm frozen (moving statistics, as when fine-tuning): at 32x32 with B = 2 the last
    # stages normalise a handful of values, often all zero after a ReLU, and training-mode batch
    # norm then amplifies float32 rounding by orders of magnitude (2 % apart on the same math).
    # Training-mode batch norm is checked against an independent reference in test_model_correctness.
    for layer in original.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    units = sw.split(original, 8, balance="flops")
    model = sw.SidewaysModel(units, mode="bp")
    model.compile(optimizer="sgd", loss=SPARSE_CE)
    frame = random_clip((2, 1, RES, RES, 3))
    labels = np.array([1, 3])
    model.build(frame.shape)
    np.testing.assert_allclose(model.predict(frame, verbose=0)[:, 0], np.asarray(original(frame[:, 0])),
                               rtol=1e-5, atol=1e-5)
    variables = original.trainable_variables
    expected = gradient_of(lambda: SPARSE_CE(labels, original(frame[:, 0], training=True)), variables)
    by_id = dict(zip([id(v) for v in model.trainable_variables], model.exact_gradients(frame, labels), strict=True))
    for v, g in zip(variables, expected, strict=True):
        scale = float(np.abs(np.asarray(g)).max()) + 1e-12
        np.testing.assert_allclose(np.asarray(by_id[id(v)]) / scale, np.asarray(g) / scale, atol=1e-5,
                                   err_msg=v.path)


@pytest.mark.tensorflow_only("CI time: one epoch per mode of three ImageNet networks; the JAX pass checks equality")
@pytest.mark.parametrize("name", ["vgg16", "resnet50", "mobilenetv2"])
def test_split_applications_train_in_every_mode(name):
    video = random_clip((1, 15, RES, RES, 3))
    for mode in sw.MODES:
        keras.utils.set_random_seed(0)
        # A unit cut from a model keeps its input shape: shortcuts are added (fusion="add").
        model = sw.SidewaysModel(sw.split(_applications()[name](), 8, balance="params"), mode=mode, fusion="add")
        model.compile(optimizer="sgd", loss=SPARSE_CE)
        history = model.fit(video, np.array([2]), epochs=1, verbose=0).history
        assert np.isfinite(history["loss"][0]), (name, mode)
