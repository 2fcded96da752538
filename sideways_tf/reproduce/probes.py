"""Claims measured on a freshly built model rather than by training it ("probes").

A claim with a probe builds each arm's model at its seed (its initial weights, the same for
every arm of a rule whose changes leave the model alone) and measures it: which input frames its
last prediction depends on (`"receptive_field"`, `sw.temporal_receptive_field`), or how close
each unit's pseudo-gradient is to the exact gradient it approximates on held-out clips
(`"fidelity"`). A probe writes the same metrics file as a training run, so runs are shared,
resumed and judged alike.
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


FIDELITY_CLIPS = 64
"""Held-out clips over which `fidelity` averages each unit's cosine."""


def fidelity(config) -> dict:
    """Each unit's cosine between its pseudo-gradient and the exact gradient, at fixed weights.

    The model is built with `config.seed` and not trained, so every stride sees the same weights;
    the clips are the first `FIDELITY_CLIPS` of the held-out split at `config.stride`, in batches
    of `config.batch_size` (at most `config.validation_steps` batches). The exact gradient is the
    one the rule approximates (`SidewaysModel.exact_gradients`: per-frame backprop for Sideways,
    backprop through time of the pipeline's own network for the skip modes).

    Returns:
      `{"cosine_units": per unit, the mean over batches, "cosine_top", "cosine_bottom",
      "cosine_mean", "clips", "parameters", "diverged": False, "minutes"}`.
    """
    import keras
    import numpy as np

    from sideways_tf.training import runner
    from sideways_tf.training.callbacks import unit_cosines

    start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    model = runner.build_model(config)
    runner.compile_model(model, config, steps_per_epoch=1)
    evaluation = runner.build_datasets(config)[1]
    batches = min(-(-FIDELITY_CLIPS // config.batch_size), config.validation_steps or FIDELITY_CLIPS)
    per_batch = [unit_cosines(model, video, labels) for video, labels in evaluation.take(batches)]
    per_unit = [float(c) for c in np.mean(per_batch, axis=0)]
    return {"cosine_units": per_unit, "cosine_top": per_unit[-1], "cosine_bottom": per_unit[0],
            "cosine_mean": float(np.mean(per_unit)), "clips": len(per_batch) * config.batch_size,
            "parameters": model.count_params(), "diverged": False, "minutes": (time.perf_counter() - start) / 60}


PROBES = {"receptive_field": receptive_field, "fidelity": fidelity}
"""Every probe by name (`Claim.probe`): `config -> metrics`."""
