"""Run in a subprocess under JAX with several devices: units over devices equal one device.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu KERAS_BACKEND=jax \
        python -m tests.core.stages_worker [CHECK ...]
    STAGES_PLATFORM=gpu KERAS_BACKEND=jax python -m tests.core.stages_worker [CHECK ...]   # real GPUs

The test session has one JAX device, and the device count is fixed when JAX starts, hence a
process of its own (one for all the checks: starting JAX is most of a small check's time). Each
check prints `ok CHECK` at its end (or `skipped CHECK: why`); any difference raises. The
placements are written for 4 devices; with fewer (2 GPUs) unit k's device index is taken modulo
the count, so shortcuts still cross boundaries both ways. Comparisons run at highest matmul
precision (GPUs default to TF32). What the checks share is in `stages_setup.py`; the data x depth
checks are in `replicas_checks.py`.
"""

import os
import sys

import jax
import keras
import numpy as np

import sideways_tf as sw
from tests.core.replicas_checks import data_and_stages, replicas_reduce_once
from tests.core.stages_setup import MODES, NUM_DEVICES, PLACEMENTS, PLATFORM, close, model_on, names, pair_on
from tests.helpers import compiled, conv_units, dense_units, random_clip


def gradients():
    """Pseudo-gradients, exact gradients and predictions in every mode, placement and fusion (conv units, BN)."""
    video, labels = random_clip((2, 11, 8, 8, 3)), np.array([0, 3])
    # Every mode on grouped units; the shortcuts' crossings on the other placements; shortcuts added
    # instead of concatenated (fusion="add") on grouped units and on one unit per device.
    cases = [("grouped", mode, "concat") for mode in MODES]
    cases += [(name, "skip_sideways", "concat") for name in PLACEMENTS if name != "grouped"]
    cases += [("grouped", "fa_skip_sideways", "add"), ("one_per_device", "skip_sideways", "add")]
    for name, mode, fusion in cases:
        devices = PLACEMENTS[name]
        placed, alone = pair_on(devices, mode, fusion=fusion)
        mode = f"{mode} {fusion}"  # in the messages below
        placed.build(video.shape)
        alone.build(video.shape)
        alone.set_weights(placed.get_weights())
        got = placed.pseudo_gradients(video, labels)
        close(got, alone.pseudo_gradients(video, labels), f"{name} {mode} pseudo-gradients")
        assert min(float(np.abs(np.asarray(g)).max()) for g in got[:-2]) > 0, "a unit got no gradient"
        close(placed.exact_gradients(video, labels), alone.exact_gradients(video, labels), f"{name} {mode} exact")
        close([placed.predict(video, verbose=0)], [alone.predict(video, verbose=0)], f"{name} {mode} predict")
        if name == "grouped" and fusion == "concat":  # streaming inference, frame by frame
            streams = [model.init_states(2) for model in (placed, alone)]
            for s in range(3):
                (got_s, streams[0]), (want_s, streams[1]) = (model.stream_step(video[:, s], state) for model, state
                                                             in zip((placed, alone), streams, strict=True))
                close([got_s], [want_s], f"{name} {mode} stream_step, frame {s}")
        # One program per device group: each unit's gradients come back on its own device.
        assert placed.engine.programs, f"{name} {mode}: not on per-device programs"
        for v, g in zip(placed.trainable_variables, got, strict=True):
            unit = next(k for k, stage in enumerate(placed.stages) if any(v is w for w in stage.trainable_variables))
            assert g.devices() == {placed.engine.place.group_devices[placed.engine.place.unit_group[unit]]}, \
                f"{name} {mode}: {v.path} is on {g.devices()}"
    print("ok gradients")


def masking():
    """The ablation without the mask (`masking=False`) on per-device programs: the one-device gradients."""
    video, labels = random_clip((2, 11, 8, 8, 3)), np.array([0, 3])
    for mode in ("sideways", "skip_sideways"):
        placed, alone = pair_on(PLACEMENTS["one_per_device"], mode, masking=False)
        masked = model_on(PLACEMENTS["one_per_device"], mode)
        for model in (placed, alone, masked):
            model.build(video.shape)
        alone.set_weights(placed.get_weights())
        masked.set_weights(placed.get_weights())
        assert placed.engine.programs and not placed.engine.masking, mode
        got = placed.pseudo_gradients(video, labels)
        close(got, alone.pseudo_gradients(video, labels), f"{mode} unmasked pseudo-gradients")
        assert not np.allclose(np.asarray(got[0]), np.asarray(masked.pseudo_gradients(video, labels)[0])), mode
    print("ok masking")


def auto():
    """`devices="auto"` groups the units over every device by time, times a clip's gradients spread and on one
    device, and spreads them only where that was faster; spread, the gradients are the one-device ones."""
    video, labels = random_clip((2, 11, 8, 8, 3)), np.array([0, 3])
    placed, alone = pair_on("auto", "skip_sideways")
    placed.build(video.shape)
    alone.build(video.shape)
    plan = placed.device_plan
    assert len(set(plan.devices)) == NUM_DEVICES and plan.devices == sorted(plan.devices), plan.devices
    assert len(plan.groups) == NUM_DEVICES and plan.measured_speedup > 0, plan
    assert placed.devices == (plan.devices if plan.measured_speedup > 1 else None), (placed.devices, plan)
    assert placed.get_config()["devices"] == "auto"
    spread = model_on(plan.devices, "skip_sideways", lambda: conv_units())
    spread.build(video.shape)
    for model in (spread, alone):
        model.set_weights(placed.get_weights())
    close(spread.pseudo_gradients(video, labels), alone.pseudo_gradients(video, labels), "auto pseudo-gradients")
    print(f"auto: measured speed-up {plan.measured_speedup:.2f}")
    print("ok auto")


def no_copies():
    """The frame loop of a placed model copies no parameter-sized buffer per step (each device's
    accumulators are one packed buffer added to outside the switch; passed through a branch,
    XLA copied them at every step)."""
    import re

    if PLATFORM != "cpu":
        # The check reads XLA:CPU's loop bodies in the compiled text; XLA:GPU names and wraps
        # them otherwise (command buffers).
        print("skipped no_copies: it reads XLA:CPU's compiled text")
        return
    from sideways_tf.core.engine import Engine

    video, labels = random_clip((2, 9, 384)), np.array([0, 1])
    model = model_on(PLACEMENTS["grouped"], "skip_sideways", lambda: [keras.layers.Dense(384, activation="tanh")
                                                                    for _ in range(4)] + [keras.layers.Dense(3)])
    model.build(video.shape)
    # The mesh runtime (GPipe's runtime="mesh" runs on it), made explicitly: models run per-device programs.
    built = model.engine
    model.engine = Engine(built.stages, built.mode, built.activation_shapes, built.prediction_shape, model.devices)
    assert not model.engine.programs
    values = [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]
    text = model.gradient_function().lower(*values, video, labels, None).compile().as_text()
    loops = [c for c in re.split(r"\n(?=\S)", text) if "wide." in c.split("\n")[0]]
    assert loops, "no loop body found in the compiled program"
    for body in loops:
        sizes = [int(np.prod([int(d) for d in dims.split(",") if d]))
                 for dims in re.findall(r"= f32\[([\d,]*)\]\{[^}]*\} copy\(", body)]
        assert all(size < 384 * 384 for size in sizes), f"the loop body copies {sizes} elements per step"
    print("ok no_copies")


def fit():
    """`fit` with batch norm (moving statistics) and metrics: the same weights and logs as one device."""
    video, labels = random_clip((4, 9, 8, 8, 3)), np.array([0, 1, 2, 3])
    for mode in ("bp", "skip_sideways"):
        placed, alone = pair_on(PLACEMENTS["grouped"], mode)
        placed.build(video.shape)
        if placed.engine.programs:  # each unit's variables made on its group's device
            _where_they_run(placed, slots=False)
        alone.build(video.shape)
        alone.set_weights(placed.get_weights())
        a = placed.fit(video, labels, batch_size=2, epochs=2, verbose=0, shuffle=False).history
        b = alone.fit(video, labels, batch_size=2, epochs=2, verbose=0, shuffle=False).history
        close(placed.get_weights(), alone.get_weights(), f"{mode} weights after fit")
        close(a["loss"], b["loss"], f"{mode} loss")
        close([placed.evaluate(video, labels, verbose=0)], [alone.evaluate(video, labels, verbose=0)], f"{mode} eval")
        _nothing_else_kept(placed)
    print("ok fit")


def _nothing_else_kept(model):
    """After training, no device holds arrays shaped like another device's parameters, besides
    variables' values (of any model still alive): the compiled per-device steps keep no clip's
    parameters (a loss closure once kept the first clip's, every unit's on the first device)."""
    import gc

    gc.collect()
    models = [m for m in gc.get_objects() if isinstance(m, sw.SidewaysModel)]
    values = {id(v.value) for m in models for v in m.variables + (m.optimizer.variables if m.optimizer else [])}
    kept = [a for a in jax.live_arrays() if id(a) not in values and a.size > 1]
    for variable in model.trainable_variables:
        home = variable.value.devices()
        strays = [a.devices() for a in kept if a.shape == variable.shape and a.devices() != home]
        assert not strays, f"{model.mode}: copies of {variable.path} (on {home}) kept on {strays}"
    if model.engine.programs:
        _where_they_run(model)
        model.set_weights(model.get_weights())  # Keras puts the values on the first device again
        model.engine.place.settle(model.optimizer, model.trainable_variables)  # as each training step does first
        _where_they_run(model)


def _where_they_run(model, slots: bool = True):
    """Each unit's variables, and (`slots`) the optimizer slots of its variables, on its group's device."""
    place = model.engine.place
    for k, stage in enumerate(model.stages):
        device = place.group_devices[place.unit_group[k]]
        wrong = [v.path for v in stage.variables if v.value.devices() != {device}]
        assert not wrong, f"{model.mode}: {wrong} not on unit {k}'s device {device}"
    if not slots:
        return
    optimizer, variables = model.optimizer, model.trainable_variables
    owners = place.group_optimizer(optimizer, variables).owners([v.value for v in variables],
                                                                [v.value for v in optimizer.variables])
    assert len(owners) == 2 * len(variables), owners  # Adam's two slots per variable
    wrong = [optimizer.variables[j].path for j, g in owners.items()
             if optimizer.variables[j].value.devices() != {place.group_devices[g]}]
    assert not wrong, f"{model.mode}: slots {wrong} not on their group's device"


def streaming():
    """Updates inside the clip, state across batches (a stream cut in two chunks) and restarts of some
    slots equal one device, on per-device programs."""
    video = random_clip((2, 14, 6))
    labels = np.array([[0] * 14, [2] * 14])
    restart = np.zeros((2, 7), bool)
    restart[1, 3] = True  # slot 1 begins a new video in the second chunk
    cases = [("sideways", dict(update_every=3, stateful=True)), ("skip_sideways", dict(update_every=3, stateful=True)),
             ("sideways", dict(stateful=True)), ("fa_skip_sideways", dict(update_every=1, stateful=True)),
             ("sideways", dict(update_every=4))]
    for mode, options in cases:
        placed, alone = pair_on(PLACEMENTS["one_per_device"], mode, lambda: dense_units(5), **options)
        for model in (placed, alone):
            model.build((2, 7, 6))
        alone.set_weights(placed.get_weights())
        assert placed.engine.programs, f"{mode} {options}: not on per-device programs"
        # A model that is not stateful takes the stream as one batch (each batch is an episode).
        chunks = ((slice(0, 7), None), (slice(7, 14), restart)) if placed.stateful else ((slice(0, 14), None),)
        for chunk, starts in chunks:
            x = video[:, chunk] if starts is None else {"video": video[:, chunk], "restart": starts}
            a = placed.train_on_batch(x, labels[:, chunk], return_dict=True)
            b = alone.train_on_batch(x, labels[:, chunk], return_dict=True)
            close([a["loss"]], [b["loss"]], f"{mode} {options} loss")
        close(placed.get_weights(), alone.get_weights(), f"{mode} {options} weights after two chunks")
        if placed.stateful:
            close(keras.tree.flatten(placed.stream_state.value()), keras.tree.flatten(alone.stream_state.value()),
                   f"{mode} {options} stream state")
    print("ok streaming")


def regularized():
    """Weight regularizers and a global gradient norm clip on per-device programs: gradients, `fit`
    (clips and a stream with updates inside), `evaluate` and losses equal one device."""
    video, labels = random_clip((4, 9, 8, 8, 3)), np.array([0, 1, 2, 3])

    def units():
        made = conv_units()
        for unit in made[1:3]:
            unit.layers[0].kernel_regularizer = keras.regularizers.L2(0.05)
        return made

    for options in ({}, dict(update_every=3)):
        models = []
        for devices in (PLACEMENTS["grouped"], None):
            keras.utils.set_random_seed(0)
            model = sw.SidewaysModel(units(), mode="skip_sideways", devices=devices, **options)
            models.append(compiled(model, keras.optimizers.Adam(0.01, global_clipnorm=0.05)))
        placed, alone = models
        for model in models:
            model.build(video.shape)
        alone.set_weights(placed.get_weights())
        assert placed.engine.programs and len(placed.losses) == 2, (placed.engine.programs, placed.losses)
        if not options:
            close(placed.pseudo_gradients(video, labels), alone.pseudo_gradients(video, labels), "pseudo-gradients")
        a = placed.fit(video, labels, batch_size=2, epochs=2, verbose=0, shuffle=False).history
        b = alone.fit(video, labels, batch_size=2, epochs=2, verbose=0, shuffle=False).history
        close(a["loss"], b["loss"], f"{options} loss with regularizers")
        close(placed.get_weights(), alone.get_weights(), f"{options} weights after fit")
        close([placed.evaluate(video, labels, verbose=0)], [alone.evaluate(video, labels, verbose=0)],
               f"{options} evaluate")
    print("ok regularized")


def gpipe():
    """The GPipe baseline gives exactly `"bp"`'s gradients, per-clip and per-frame labels, 1 to 4 devices,
    on per-device programs and on the mesh."""
    from sideways_tf.parallel import gpipe as gp

    video = random_clip((2, 7, 8, 8, 3))
    clip_labels, frame_labels = np.array([0, 3]), np.array([[0, 1, 2, 3, 4, 0, 1], [4, 4, 3, 3, 2, 2, 1]])
    weights = np.array([[1, 0, 1, 1, 0.5, 1, 1], [0, 1, 1, 1, 1, 2, 1]], "float32")
    # Consecutive units per device (GPipe's need), on 1, 2 and up to 4 devices.
    spread = [f"{PLATFORM}:{min(i, NUM_DEVICES - 1)}" for i in (0, 1, 2, 3, 3)]
    for devices in (names(0, 0, 0, 0, 0), names(0, 0, 1, 1, 1), spread):
        placed = model_on(devices, "bp")
        placed.build(video.shape)
        runtimes = ("programs", "mesh") if len(set(devices)) > 1 else ("mesh",)
        for labels, w in ((clip_labels, None), (frame_labels, weights)):
            exact = placed.exact_gradients(video, labels, w)
            for runtime in runtimes:
                function = gp.gradient_function(placed, runtime)
                params = [v.value for v in placed.trainable_variables]
                states = [v.value for v in placed.non_trainable_variables]
                got, loss = function(params, states, video, labels, w)
                close(got, exact, f"gpipe {runtime} {devices}")
                assert min(float(np.abs(np.asarray(g)).max()) for g in got[:-2]) > 1e-3
                assert np.isfinite(float(loss)) and float(loss) > 0
    print("ok gpipe")


def programs():
    """Per-device programs: each parameter lives on its group's device after `fit`; `check_finite`
    stops a step there and keeps the weights; weights saved from it load into one device."""
    import tempfile

    from sideways_tf.core import frame_loop
    from sideways_tf.core.backends import jax_graphs

    if PLATFORM == "cpu":
        # The XLA options of GPU steps are none on a CPU: an option valid everywhere takes their
        # path here (a step traced inside Keras' shape inference must go without them).
        jax_graphs.compiler_options = lambda device=None: {"xla_gpu_graph_min_graph_size": 1}
    video, labels = random_clip((2, 9, 8, 8, 3)), np.array([0, 3])
    placed, alone = pair_on(PLACEMENTS["grouped"], "skip_sideways", check_finite=True)
    for model in (placed, alone):
        model.build(video.shape)
    alone.set_weights(placed.get_weights())
    placed.fit(video, labels, epochs=2, batch_size=2, verbose=0)
    place = placed.engine.place
    assert placed.engine.programs and place.num_groups == 2
    for k, stage in enumerate(placed.stages):
        for v in stage.trainable_variables:
            assert v.value.devices() == {place.group_devices[place.unit_group[k]]}, (v.path, v.value.devices())
    # A clip's update takes over the old parameters' and slots' memory (as Keras' compiled step does).
    kept = [v.value for v in placed.trainable_variables]
    placed.train_on_batch(video, labels)
    assert all(x.is_deleted() for x in kept), "the update kept the old parameters alive"
    before = placed.get_weights()
    bad = video.copy()
    bad[1, 4, 2, 2, 0] = np.nan
    try:
        placed.fit(bad, labels, epochs=1, batch_size=2, verbose=0)
    except FloatingPointError as error:
        assert "check_finite: the input video holds NaN or Inf" in str(error), error
    else:
        raise AssertionError("check_finite let a NaN input through")
    close(placed.get_weights(), before, "weights after the refused step", atol=0)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "placed.weights.h5")
        placed.save_weights(path)
        alone.load_weights(path)
    close([alone.predict(video, verbose=0)], [placed.predict(video, verbose=0)], "predict after load_weights")
    # Compiled again with another loss, the per-device steps are traced again with it.
    first = placed.pseudo_gradients(video, labels)
    for dispatch in frame_loop.DISPATCH:
        place.dispatch = dispatch
        close(placed.pseudo_gradients(video, labels), first, f"dispatch={dispatch}", atol=0)
    place.dispatch = "workers"
    for model in (placed, alone):
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                                      ignore_class=3))
    again = placed.pseudo_gradients(video, labels)
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(first, again, strict=True)) > 1e-4
    close(again, alone.pseudo_gradients(video, labels), "gradients after compile")
    print("ok programs")


CHECKS = {"gradients": gradients, "masking": masking, "programs": programs, "auto": auto, "no_copies": no_copies,
          "fit": fit, "streaming": streaming, "regularized": regularized, "gpipe": gpipe,
          "data_and_stages": data_and_stages, "replicas_reduce_once": replicas_reduce_once}

if __name__ == "__main__":
    assert keras.backend.backend() == "jax" and NUM_DEVICES >= 2, (PLATFORM, os.environ.get("XLA_FLAGS"))
    with sw.highest_precision():
        for check in sys.argv[1:] or CHECKS:
            CHECKS[check]()
