"""The 3D baselines: shapes, parameters, causality, training, saving."""

from itertools import pairwise

import keras
import numpy as np
import pytest

import sideways_tf as sw

K = 51


def test_shapes_and_parameter_count():
    model = sw.models.vgg16_3d(K, frame_shape=(112, 112, 3))
    assert model.output_shape == (None, K)
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = sum(27 * a * b + 4 * b for a, b in pairwise(channels))
    assert model.count_params() == convs + 512 * 4096 + 4096 * 4096 + 4096 * K + K
    per_frame = sw.models.vgg16_3d(K, per_frame_outputs=True, width=0.125, frame_shape=(224, 224, 3))
    assert per_frame.predict(np.zeros((1, 32, 224, 224, 3), "float32"), verbose=0).shape == (1, 2, K)


def _outputs(model, video):
    return model.predict(video, verbose=0)


@pytest.mark.parametrize("causal", [True, False])
def test_causal_outputs_ignore_future_frames(causal):
    keras.utils.set_random_seed(0)
    model = sw.models.vgg16_3d(5, causal=causal, width=1 / 16, per_frame_outputs=True, frame_shape=(32, 32, 3))
    rng = np.random.default_rng(0)
    video = rng.normal(size=(1, 48, 32, 32, 3)).astype("float32")
    changed = video.copy()
    t = 20
    changed[:, t + 1:] = rng.normal(size=changed[:, t + 1:].shape)
    before, after = _outputs(model, video), _outputs(model, changed)
    assert before.shape == (1, 3, 5)
    # Output j of the causal model sees frames up to j * 16 (the product of temporal strides).
    unchanged = [j for j in range(3) if j * 16 <= t]
    if causal:
        np.testing.assert_allclose(before[:, unchanged], after[:, unchanged], atol=1e-6)
        assert not np.allclose(before[:, -1], after[:, -1])
    else:
        assert not np.allclose(before[:, 0], after[:, 0], atol=1e-6)


def test_trains_and_saves(tmp_path):
    keras.utils.set_random_seed(0)
    model = sw.models.vgg16_3d(4, causal=True, width=1 / 16, space_to_depth=True, frame_shape=(32, 32, 3))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    video = np.random.default_rng(0).normal(size=(2, 8, 32, 32, 3)).astype("float32")
    model.fit(video, np.array([0, 3]), verbose=0)
    path = str(tmp_path / "vgg3d.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(video, verbose=0), model.predict(video, verbose=0), atol=1e-5)


def _on_cpu() -> bool:
    import jax

    return jax.default_backend() == "cpu"


@pytest.mark.parametrize("causal", [False, True])
def test_remat_variant_computes_the_same_values_gradients_and_statistics(causal):
    from tests.helpers import gradient_of, random_clip

    video = random_clip((2, 16, 16, 16, 3))
    labels = np.array([1, 3])
    models = []
    for remat in (False, True):
        keras.utils.set_random_seed(0)
        models.append(sw.models.vgg16_3d(5, causal=causal, width=1 / 32, frame_shape=(16, 16, 3), remat=remat))
    plain, remat = models
    assert remat.name.endswith("remat_vgg16_3d") and any(isinstance(la, sw.layers.Remat) for la in remat.layers)
    remat.set_weights(plain.get_weights())
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    grads = [gradient_of(lambda m=m: loss(labels, m(video, training=True)), m.trainable_variables) for m in models]
    # On an NVIDIA GPU the recomputed 3D convolutions differ from the kept ones by up to 5e-4
    # relative even at highest matmul precision (measured on an H200: cuDNN picks other kernels).
    rtol, atol = (1e-4, 1e-6) if keras.config.backend() != "jax" or _on_cpu() else (1e-3, 1e-4)
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    for m in models:
        m(video, training=True)  # one stateful forward: batch norm moves once
    for a, b in zip(plain.get_weights(), remat.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain.predict(video, verbose=0), remat.predict(video, verbose=0), atol=1e-5)
