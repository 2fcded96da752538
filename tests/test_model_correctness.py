"""The properties of the rules (`docs/rules.md`), proven against exact backprop."""

import keras
import numpy as np
import pytest
from keras import ops

import sideways_tf as sw
from tests.helpers import (
    SPARSE_CE,
    assert_grads_close,
    compiled,
    constant_clip,
    conv_units,
    dense_units,
    gradient_of,
    random_clip,
)

SIDEWAYS_MODES = ("sideways", "skip_sideways", "fa_skip_sideways")
LABELS = np.array([1, 3, 0])


def _model(units_fn, mode, fusion="concat", seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return compiled(sw.SidewaysModel(units_fn(), mode=mode, fusion=fusion, **kwargs))


def _same_weights(model, reference, video):
    model.build(video.shape)
    reference.build(video.shape)
    model.set_weights(reference.get_weights())


@pytest.mark.parametrize("mode", ["sideways"])  # the skip modes need D >= 3 (a shortcut from unit i-2)
def test_depth_one_equals_bp_on_random_clip(mode):
    video = random_clip((3, 5, 8, 8, 3))

    def one_unit():
        return [keras.Sequential([keras.layers.Conv2D(4, 3, strides=2, padding="same"),
                                  keras.layers.BatchNormalization(), keras.layers.ReLU(),
                                  keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])]

    bp = _model(one_unit, "bp")
    model = _model(one_unit, mode, seed=1)
    _same_weights(model, bp, video)
    assert_grads_close(model.pseudo_gradients(video, LABELS), bp.pseudo_gradients(video, LABELS))


def test_depth_one_equals_bp_with_per_frame_targets():
    video = random_clip((2, 4, 6))
    frame_labels = np.array([[0, 1, 2, 1], [2, 2, 0, 1]])
    bp = _model(lambda: dense_units(1), "bp")
    for mode in ("sideways",):  # the skip modes need D >= 3
        model = _model(lambda: dense_units(1), mode, seed=1)
        _same_weights(model, bp, video)
        assert_grads_close(model.pseudo_gradients(video, frame_labels), bp.pseudo_gradients(video, frame_labels))


@pytest.mark.parametrize("batch_norm", [True, False])
def test_sideways_equals_bp_on_constant_clip(batch_norm):
    video = constant_clip((3, 11, 8, 8, 3))
    bp = _model(lambda: conv_units(batch_norm), "bp")
    model = _model(lambda: conv_units(batch_norm), "sideways", seed=1)
    _same_weights(model, bp, video)
    assert_grads_close(model.pseudo_gradients(video, LABELS), bp.pseudo_gradients(video, LABELS))


def _tau(stage, shortcut):
    return shortcut if stage.transform is None else stage.transform(shortcut)


def _manual_backprop_with_shortcuts(model, frame, labels, stop_gradient):
    """Exact backprop of the per-frame network with shortcuts, written out independently."""
    units = [stage.unit for stage in model.stages]

    def loss():
        hidden = []
        for k, stage in enumerate(model.stages):
            x = frame if k == 0 else hidden[k - 1]
            if k >= 2:
                # FA: no gradient reaches unit k-2; a projecting tau belongs to unit k and learns.
                source = ops.stop_gradient(hidden[k - 2]) if stop_gradient else hidden[k - 2]
                shortcut = _tau(stage, source)
                x = ops.concatenate([x, shortcut], -1) if model.fusion == "concat" else x + shortcut
            hidden.append(units[k](x, training=True))
        return SPARSE_CE(labels, hidden[-1])

    return gradient_of(loss, model.trainable_variables)


@pytest.mark.parametrize("fusion", ["concat", "add"])
@pytest.mark.parametrize("mode", ["skip_sideways", "fa_skip_sideways"])
def test_skip_modes_equal_exact_backprop_with_shortcuts_on_constant_clip(mode, fusion):
    video = constant_clip((3, 11, 8, 8, 3))
    model = _model(conv_units, mode, fusion=fusion)
    model.build(video.shape)
    kinds = [None if s.transform is None else (s.transform.pool, s.transform.pool_size, s.transform.channels)
             for s in model.stages]
    assert kinds[3][:2] == ("max", (2, 2)) and kinds[4][1] == "global"  # tau pools
    if fusion == "add":
        assert kinds[3][2] == "tile" and kinds[4][2] == "project"
    expected = _manual_backprop_with_shortcuts(model, video[:, 0], LABELS, mode == "fa_skip_sideways")
    assert_grads_close(model.pseudo_gradients(video, LABELS), expected)
    assert_grads_close(model.exact_gradients(video, LABELS), expected)


def _shrinking_units():
    """Valid convolutions shrink 10 -> 8 -> 6 -> 4 (as in Xception): tau pools 8 -> 6 and 6 -> 4 with
    overlapping 3x3 windows, stride 1."""
    def conv():
        return keras.Sequential([keras.layers.Conv2D(4, 3, activation="relu")])

    return [conv(), conv(), conv(), keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(5)])]


@pytest.mark.parametrize("mode", ["skip_sideways", "fa_skip_sideways"])
def test_skip_modes_equal_exact_backprop_with_overlapping_tau_pools(mode):
    video = constant_clip((3, 9, 10, 10, 3))
    model = _model(_shrinking_units, mode, fusion="add")
    model.build(video.shape)
    assert [(s.transform.pool_size, s.transform.strides) for s in model.stages[2:]] == [((3, 3), (1, 1))] * 2
    expected = _manual_backprop_with_shortcuts(model, video[:, 0], LABELS, mode == "fa_skip_sideways")
    assert_grads_close(model.pseudo_gradients(video, LABELS), expected)
    assert_grads_close(model.exact_gradients(video, LABELS), expected)


def _manual_backprop_through_time(model, video, labels, stop_gradient):
    """Exact backprop of the network the pipeline computes on a clip, written out independently:
    at step s unit k reads `h_{k-1}` and `tau(h_{k-2})` of step s - 1 (from frames s - k and
    s - k + 1); the loss is the mean over the steps where the top output is valid."""
    units, depth = [stage.unit for stage in model.stages], len(model.stages)

    def loss():
        last, losses = {}, []
        for s in range(video.shape[1]):
            now = {}
            for k, stage in enumerate(model.stages):
                if s < k:  # its input is still the pipeline's zeros: nothing valid depends on it
                    continue
                x = ops.convert_to_tensor(video[:, s]) if k == 0 else last[k - 1]
                if k >= 2:
                    source = ops.stop_gradient(last[k - 2]) if stop_gradient else last[k - 2]
                    shortcut = _tau(stage, source)
                    x = ops.concatenate([x, shortcut], -1) if model.fusion == "concat" else x + shortcut
                now[k] = units[k](x, training=True)
            if s >= depth - 1:
                losses.append(SPARSE_CE(labels, now[depth - 1]))
            last = now
        return ops.mean(ops.stack(losses))

    return gradient_of(loss, model.trainable_variables)


@pytest.mark.parametrize("mode,fusion", [("skip_sideways", "concat"), ("fa_skip_sideways", "add")])
def test_skip_modes_exact_gradients_are_backprop_through_the_pipelines_network(mode, fusion):
    video = random_clip((3, 9, 8, 8, 3))
    model = _model(conv_units, mode, fusion=fusion)
    model.build(video.shape)
    exact = model.exact_gradients(video, LABELS)
    assert_grads_close(exact, _manual_backprop_through_time(model, video, LABELS, mode == "fa_skip_sideways"))
    # Not the per-frame network with shortcuts from the same frame (the reference before), averaged over frames.
    same_frame = [_manual_backprop_with_shortcuts(model, video[:, s], LABELS, mode == "fa_skip_sideways")
                  for s in range(video.shape[1])]
    averaged = [np.mean([np.asarray(g[i]) for g in same_frame], axis=0) for i in range(len(exact))]
    assert not all(np.allclose(e, a, atol=1e-4) for e, a in zip(exact, averaged, strict=True))


def test_fa_differs_from_full_skip_on_constant_clip():
    video = constant_clip((3, 11, 8, 8, 3))
    full = _model(conv_units, "skip_sideways")
    fa = _model(conv_units, "fa_skip_sideways", seed=1)
    _same_weights(fa, full, video)
    g_full, g_fa = full.pseudo_gradients(video, LABELS), fa.pseudo_gradients(video, LABELS)
    # The top unit's gradient is the same; shallower units lose the shortcut part.
    np.testing.assert_allclose(g_full[-1], g_fa[-1], atol=1e-6)
    assert not np.allclose(g_full[0], g_fa[0], atol=1e-6)


@pytest.mark.parametrize("mode", SIDEWAYS_MODES)
def test_varying_clip_differs_from_exact_backprop(mode):
    video = random_clip((3, 11, 8, 8, 3))
    model = _model(conv_units, mode)
    pseudo = model.pseudo_gradients(video, LABELS)
    exact = model.exact_gradients(video, LABELS)
    differs = [not np.allclose(p, e, atol=1e-4) for p, e in zip(pseudo, exact, strict=True)]
    assert any(differs[:-2])
    if mode == "sideways":
        bp = _model(conv_units, "bp", seed=1)
        _same_weights(bp, model, video)
        assert_grads_close(exact, bp.pseudo_gradients(video, LABELS))


def test_pseudo_gradients_change_no_state():
    video = random_clip((3, 11, 8, 8, 3))
    model = _model(conv_units, "skip_sideways")
    model.build(video.shape)
    before = [np.array(v) for v in model.variables]
    first = model.pseudo_gradients(video, LABELS)
    again = model.pseudo_gradients(video, LABELS)
    for b, v in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(b, np.array(v))
    assert_grads_close(first, again, atol=0, rtol=0)


def test_sample_weight_scales_examples():
    video = random_clip((2, 7, 6))
    labels = np.array([0, 2])
    model = _model(lambda: dense_units(3), "skip_sideways")
    weighted = model.pseudo_gradients(video, labels, np.array([1.0, 0.0], "float32"))
    alone = model.pseudo_gradients(video[:1], labels[:1])
    assert_grads_close(weighted, [0.5 * np.asarray(g) for g in alone])


def test_per_frame_weights_mask_frames():
    video = random_clip((2, 7, 6))
    frame_labels = np.tile(np.array([[0], [2]]), (1, 7))
    model = _model(lambda: dense_units(1), "bp")
    weights = np.ones((2, 7), "float32")
    weights[:, 3:] = 0.0
    masked = model.pseudo_gradients(video, frame_labels, weights)
    first = model.pseudo_gradients(video[:, :3], frame_labels[:, :3])
    assert_grads_close(masked, [np.asarray(g) * 3 / 7 for g in first])


def test_batch_norm_absorbs_only_valid_steps():
    depth, frames, momentum = 5, 12, 0.9
    video = constant_clip((3, frames, 8, 8, 3))
    model = _model(conv_units, "sideways")
    model.build(video.shape)
    bn0, bn2 = model.stages[0].unit.layers[1], model.stages[2].unit.layers[1]
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=SPARSE_CE)

    def batch_mean(unit_index, layer_index):
        h = video[:, 0]
        saved = [np.array(v) for v in model.non_trainable_variables]
        for k in range(unit_index):
            h = model.stages[k].unit(h, training=True)
        for v, old in zip(model.non_trainable_variables, saved, strict=True):
            v.assign(old)
        sub = model.stages[unit_index].unit
        for layer in sub.layers[:layer_index]:
            h = layer(h)
        return np.asarray(ops.mean(h, axis=(0, 1, 2)))

    mu0, mu2 = batch_mean(0, 1), batch_mean(2, 1)
    model.train_on_batch(video, LABELS)
    # Unit k sees a valid input at steps k..T-1: T - k updates towards the same batch mean.
    np.testing.assert_allclose(np.array(bn0.moving_mean), mu0 * (1 - momentum ** frames), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.array(bn2.moving_mean), mu2 * (1 - momentum ** (frames - 2)), rtol=1e-4, atol=1e-6)
    assert depth == len(model.stages)
