"""tau: which transform each pair of shapes gets, and what it computes."""

import numpy as np
import pytest

from sideways_tf.core.shortcut import ShortcutTransform, fuse, make_shortcut
from tests.helpers import np_pool, random_clip


def test_identity_when_shapes_match():
    assert make_shortcut((8, 8, 4), (8, 8, 4), "concat") is None
    assert make_shortcut((8, 8, 4), (8, 8, 16), "concat") is None  # concat only needs the spatial size


def test_integer_stride_max_pool():
    tau = make_shortcut((8, 6, 4), (4, 2, 4), "concat")
    assert (tau.pool, tau.pool_size, tau.channels) == ("max", (2, 3), None)
    x = np.arange(2 * 8 * 6 * 4, dtype="float32").reshape(2, 8, 6, 4)
    np.testing.assert_array_equal(tau(x), np_pool(x, (2, 3)))


def test_same_padded_pool_when_not_a_multiple():
    tau = make_shortcut((14, 7, 4), (3, 3, 4), "concat")
    assert (tau.pool_size, tau.padding) == ((5, 3), "same")
    x = random_clip((2, 14, 7, 4))
    np.testing.assert_array_equal(tau(x), np_pool(x, (5, 3), padding="same"))
    assert tau(x).shape == (2, 3, 3, 4) == tau.compute_output_shape((2, 14, 7, 4))


def test_valid_pool_drops_the_last_row_when_keeping_it_cannot_reach():
    # 17 -> 8 (MobileNetV2 after its zero padding): stride 3 keeping the last window gives 6,
    # stride 2 dropping it gives 8.
    tau = make_shortcut((17, 17, 96), (8, 8, 24), "concat")
    assert (tau.pool_size, tau.padding) == ((2, 2), "valid")
    x = random_clip((2, 17, 17, 3))
    np.testing.assert_array_equal(tau(x), np_pool(x[:, :16, :16], (2, 2)))
    assert tau(x).shape == (2, 8, 8, 3) == tau.compute_output_shape((2, 17, 17, 3))


@pytest.mark.parametrize("size, target, window, stride", [
    (55, 53, 3, 1),   # Xception: a valid 3x3 convolution
    (26, 11, 5, 2),   # InceptionV3: a valid convolution, then a stride-2 pool
    (6, 4, 3, 1),
])
def test_overlapping_valid_pool_where_a_network_shrank_the_size(size, target, window, stride):
    tau = make_shortcut((size, size, 4), (target, target, 8), "add")
    assert (tau.pool_size, tau.strides, tau.padding) == ((window, window), (stride, stride), "valid")
    x = random_clip((2, size, size, 4))
    expected = np.stack([np.stack([x[:, i * stride:i * stride + window, j * stride:j * stride + window].max(axis=(1, 2))
                                   for j in range(target)], axis=1) for i in range(target)], axis=1)
    np.testing.assert_array_equal(tau(x)[..., :4], expected)  # tiled to 8 channels
    assert tau(x).shape == (2, target, target, 8) == tau.compute_output_shape((2, size, size, 4))
    clone = ShortcutTransform.from_config(tau.get_config())
    assert (clone.pool_size, clone.strides) == (tau.pool_size, tau.strides)


def test_avgpool_and_global_pool():
    tau = make_shortcut((8, 8, 4), (4, 4, 4), "concat", shortcut="avgpool")
    assert tau.pool == "avg"
    big = random_clip((2, 8, 8, 4))
    np.testing.assert_allclose(tau(big), np_pool(big, (2, 2), "avg"), rtol=1e-5)
    x = random_clip((2, 4, 4, 4))
    glob = make_shortcut((4, 4, 4), (10,), "concat")
    assert glob.pool_size == "global"
    np.testing.assert_allclose(glob(x), x.max(axis=(1, 2)), rtol=1e-6)
    glob_avg = make_shortcut((4, 4, 4), (10,), "concat", shortcut="avgpool")
    np.testing.assert_allclose(glob_avg(x), x.mean(axis=(1, 2)), rtol=1e-6)


def test_add_matches_channels_by_tile_or_project():
    tile = make_shortcut((4, 4, 4), (4, 4, 8), "add")
    assert tile.channels == "tile"
    x = random_clip((1, 4, 4, 4))
    np.testing.assert_array_equal(tile(x), np.concatenate([x, x], -1))
    project = make_shortcut((4, 4, 4), (4, 4, 6), "add")
    assert project.channels == "project"
    assert project(x).shape == (1, 4, 4, 6) and len(project.trainable_variables) == 1
    forced = make_shortcut((4, 4, 4), (4, 4, 8), "add", shortcut="project")
    assert forced.channels == "project"


def test_fuse():
    a, b = np.ones((1, 2, 2, 3), "float32"), 2 * np.ones((1, 2, 2, 3), "float32")
    assert fuse(a, b, "concat").shape == (1, 2, 2, 6)
    np.testing.assert_array_equal(fuse(a, b, "concat")[..., :3], a)  # direct part first
    np.testing.assert_array_equal(fuse(a, b, "add"), 3 * a)


@pytest.mark.parametrize(
    "shortcut_shape, direct_shape, fusion, shortcut",
    [((2, 2, 4), (4, 4, 4), "concat", "auto"),      # smaller than the direct input
     ((4,), (4, 4, 4), "concat", "auto"),           # rank 2 into rank 4
     ((4, 4, 4), (4, 4, 6), "add", "tile")],        # 6 channels are no multiple of 4
)
def test_impossible_shapes_raise(shortcut_shape, direct_shape, fusion, shortcut):
    with pytest.raises(ValueError, match="shortcut="):
        make_shortcut(shortcut_shape, direct_shape, fusion, shortcut)


def test_config_round_trip():
    tau = make_shortcut((8, 8, 4), (4, 4, 6), "add")
    clone = ShortcutTransform.from_config(tau.get_config())
    assert (clone.pool, clone.pool_size, clone.channels, clone.out_channels, clone.padding) == (
        "max", (2, 2), "project", 6, "valid")
