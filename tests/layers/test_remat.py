"""Remat: same values, gradients and batch-norm statistics as the plain block, on every backend."""

import keras
import numpy as np
import pytest
from keras import ops

from sideways_tf.layers import HardTanh, Remat
from tests.helpers import gradient_of, random_clip


def _block(batch_norm: bool):
    keras.utils.set_random_seed(0)
    norm = [keras.layers.BatchNormalization(momentum=0.5)] if batch_norm else []
    return keras.Sequential([keras.layers.Conv2D(4, 3, padding="same"), *norm, keras.layers.ReLU(),
                             keras.layers.Conv2D(2, 3, padding="same")])


@pytest.mark.parametrize("batch_norm", [False, True])
def test_same_outputs_gradients_and_statistics_as_the_plain_block(batch_norm):
    x = ops.convert_to_tensor(random_clip((2, 6, 6, 3)))
    plain, wrapped_block = _block(batch_norm), _block(batch_norm)
    remat = Remat(wrapped_block)
    plain.build(x.shape)
    remat.build(x.shape)
    wrapped_block.set_weights(plain.get_weights())
    results = []
    initial = [np.array(v) for v in plain.non_trainable_variables]
    for layer in (plain, remat):
        grads = gradient_of(lambda layer=layer: ops.sum(layer(x, training=True) ** 2), layer.trainable_variables)
        layer(x, training=True)  # one stateful step: batch norm moves its statistics once
        results.append((grads, [np.array(v) for v in layer.non_trainable_variables]))
    (plain_grads, plain_stats), (remat_grads, remat_stats) = results
    for a, b in zip(plain_grads, remat_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert len(plain_stats) == len(remat_stats) == (2 if batch_norm else 0)
    for a, b, start in zip(plain_stats, remat_stats, initial, strict=True):
        assert not np.allclose(a, start)  # moved once; a second update (momentum 0.5) would differ from plain
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain(x, training=False), remat(x, training=False), rtol=1e-5, atol=1e-6)


def test_remat_unit_with_batch_norm_trains_in_the_pipeline():
    import sideways_tf as sw
    from tests.helpers import compiled

    units = [Remat(_block(True)), keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])]
    model = compiled(sw.SidewaysModel(units, mode="sideways"))
    video = random_clip((2, 5, 6, 6, 3))
    model.build(video.shape)
    before = [np.array(v) for v in model.non_trainable_variables]
    model.train_on_batch(video, np.array([0, 2]))
    after = [np.array(v) for v in model.non_trainable_variables]
    assert len(after) == 2 and not np.allclose(before[0], after[0])


def test_rejects_non_layers():
    with pytest.raises(ValueError, match="`layer` must be a keras.layers.Layer"):
        Remat("dense")


def test_hard_tanh():
    out = HardTanh()(ops.convert_to_tensor([-3.0, -0.5, 0.2, 7.0]))
    np.testing.assert_allclose(out, [-1.0, -0.5, 0.2, 1.0], rtol=1e-6)
