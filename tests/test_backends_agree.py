"""Both Keras backends compute the same thing, and JAX needs no TensorFlow (each in a subprocess)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.helpers import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(backend: str, *args: str, timeout: int = 600) -> str:
    env = subprocess_env(KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="runs both backends itself; once per CI run, in the TensorFlow pass")
def test_tensorflow_and_jax_give_the_same_gradients_updates_and_predictions(tmp_path):
    for module in ("tensorflow", "jax"):
        pytest.importorskip(module, reason=f"the comparison needs both backends installed ({module} is not)")
    for backend in ("tensorflow", "jax"):  # TF writes the initial weights, JAX reads them
        _run(backend, "-m", "tests.backend_worker", str(tmp_path))
    tf_out, jax_out = np.load(tmp_path / "tensorflow.npz"), np.load(tmp_path / "jax.npz")
    assert set(tf_out.files) == set(jax_out.files) and len(tf_out.files) > 100
    for key in sorted(tf_out.files):
        np.testing.assert_allclose(jax_out[key], tf_out[key], atol=1e-5, rtol=1e-4, err_msg=key)
    # The updates did something: batch-norm statistics and weights moved.
    initial = np.load(tmp_path / "weights_skip_add.npz")
    moved = [not np.allclose(tf_out[f"skip_add/updated/{i}"], initial[f"w{i}"]) for i in range(len(initial.files))]
    assert all(moved)


SCRIPT = """
import sys
import keras, numpy as np
import sideways_tf as sw
sw.models.vgg8(4, width=1 / 32)  # the model zoo builds without TensorFlow too
units = [keras.layers.Dense(8, activation="relu") for _ in range(2)] + [keras.layers.Dense(3)]
model = sw.SidewaysModel(units, mode="skip_sideways")
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
x = np.random.normal(size=(8, 7, 5)).astype("float32")
y = np.random.randint(0, 3, size=8)
model.fit(x, y, epochs=1, verbose=0)
model.evaluate(x, y, verbose=0)
model.predict(x, verbose=0)
model.pseudo_gradients(x, y)
print(sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")))
"""


def test_jax_backend_never_imports_tensorflow():
    pytest.importorskip("jax")
    assert _run("jax", "-c", SCRIPT).strip().splitlines()[-1] == "[]"
