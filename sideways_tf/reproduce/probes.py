"""Claims measured on a freshly built model rather than by training it ("probes").

A claim with `probe="receptive_field"` builds each arm's model at its seed and measures which
input frames its last prediction depends on (`sw.temporal_receptive_field`); it writes the
same metrics file as a training run, so runs are shared, resumed and judged alike.
"""

from __future__ import annotations

import time


def receptive_field(config) -> dict:
    """Measures the temporal receptive field of `config`'s model.

    The model is built with `config.seed`, untrained; the clip is `[1, T, R, R, 3]` standard-normal
    noise (T = `config.num_frames`) drawn from a stream of its own (`[seed, 1]`), apart from the
    noise that `temporal_receptive_field` adds to it (`seed`).

    Returns:
      `{"receptive_field": frames in the field, "receptive_frames": their indices, "depth": units,
      "parameters", "diverged": False, "minutes"}`.
    """
    import keras
    import numpy as np

    from sideways_tf.receptive_field import temporal_receptive_field
    from sideways_tf.training import runner

    start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    model = runner.build_model(config)
    clip = np.random.default_rng([config.seed, 1]).standard_normal(
        (1, config.num_frames, config.resolution, config.resolution, 3)).astype("float32")
    frames = temporal_receptive_field(model, clip, seed=config.seed)
    return {"receptive_field": len(frames), "receptive_frames": frames, "depth": model.depth,
            "parameters": model.count_params(), "diverged": False, "minutes": (time.perf_counter() - start) / 60}


PROBES = {"receptive_field": receptive_field}
"""Every probe by name (`Claim.probe`): `config -> metrics`."""
