"""Run in a subprocess under one Keras backend: pseudo-gradients and one update of a fixed model and clip.

    KERAS_BACKEND=jax python -m tests.backend_worker DIR

Reads `DIR/weights.npz` (the initial weights, written by the first backend to run when absent)
and writes `DIR/<backend>.npz`: for every mode, the pseudo-gradients, the exact gradients and
the weights (trainable and batch-norm statistics) after one `train_on_batch`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import sideways_tf as sw  # noqa: E402
from tests.helpers import compiled, conv_units, random_clip  # noqa: E402

VIDEO = random_clip((3, 10, 8, 8, 3), seed=4)
LABELS = np.array([1, 3, 0])
CONFIGS = {
    "bp": dict(mode="bp"),
    "sideways": dict(mode="sideways"),
    "skip_concat": dict(mode="skip_sideways", fusion="concat"),
    "skip_add": dict(mode="skip_sideways", fusion="add"),
    "fa_skip": dict(mode="fa_skip_sideways", fusion="add"),
}


def main(folder: str) -> None:
    backend = keras.backend.backend()
    out = {}
    for name, kwargs in CONFIGS.items():
        keras.utils.set_random_seed(0)
        model = compiled(sw.SidewaysModel(conv_units(), **kwargs))
        model.build(VIDEO.shape)
        path = os.path.join(folder, f"weights_{name}.npz")
        if os.path.exists(path):
            stored = np.load(path)
            model.set_weights([stored[f"w{i}"] for i in range(len(stored.files))])
        else:
            np.savez(path, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
        for i, g in enumerate(model.pseudo_gradients(VIDEO, LABELS)):
            out[f"{name}/pseudo/{i}"] = np.asarray(g)
        for i, g in enumerate(model.exact_gradients(VIDEO, LABELS)):
            out[f"{name}/exact/{i}"] = np.asarray(g)
        model.train_on_batch(VIDEO, LABELS)
        for i, w in enumerate(model.get_weights()):
            out[f"{name}/updated/{i}"] = w
        out[f"{name}/predict"] = np.asarray(model.predict(VIDEO, verbose=0))
    np.savez(os.path.join(folder, f"{backend}.npz"), **out)


if __name__ == "__main__":
    main(sys.argv[1])
