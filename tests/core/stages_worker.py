"""Run in a subprocess under JAX with several devices: units over devices equal one device.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu KERAS_BACKEND=jax \
        python -m tests.core.stages_worker [CHECK ...]
    STAGES_PLATFORM=gpu KERAS_BACKEND=jax python -m tests.core.stages_worker [CHECK ...]   # real GPUs

The test session has one JAX device, and the device count is fixed when JAX starts, hence a
process of its own (one for all the checks: starting JAX is most of a small check's time). Each
check prints `ok CHECK` at its end (or `skipped CHECK: why`); any difference raises. The
placements are written for 4 devices; with fewer (2 GPUs) unit k's device index is taken modulo
the count, so shortcuts still cross boundaries both ways. Comparisons run at highest matmul
precision (GPUs default to TF32).
"""

import functools
import os
import sys

import jax
import keras
import numpy as np

import sideways_tf as sw
from tests.helpers import compiled, conv_units, dense_units, random_clip

PLATFORM = os.environ.get("STAGES_PLATFORM", "cpu")
NUM_DEVICES = min(4, len(jax.devices(PLATFORM)))


def names(*indices: int) -> list[str]:
    """Device names of `PLATFORM` for device indices written for 4 devices (modulo the count)."""
    return [f"{PLATFORM}:{i % NUM_DEVICES}" for i in indices]


# Groups of consecutive units, one unit per device, and groups that are not consecutive:
# shortcuts (h_{k-2}) then cross one or two device boundaries, forward and back.
PLACEMENTS = {
    "grouped": names(0, 0, 1, 1, 1),
    "one_per_device": names(0, 1, 2, 3, 0),
    "interleaved": names(1, 0, 1, 0, 0),
}
MODES = ("sideways", "skip_sideways", "fa_skip_sideways")


def _model(devices, mode, units=lambda: conv_units(), **kwargs):
    keras.utils.set_random_seed(0)
    return compiled(sw.SidewaysModel(units(), mode=mode, devices=devices, **kwargs), keras.optimizers.Adam(0.01))


def _pair(devices, mode, units=lambda: conv_units(), **kwargs):
    """A model placed on `devices` and the same model (same weights) on one device."""
    return _model(devices, mode, units, **kwargs), _model(None, mode, units, **kwargs)


def _close(actual, expected, what, atol=1e-5):
    assert len(actual) == len(expected), what
    for k, (a, b) in enumerate(zip(actual, expected, strict=True)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=1e-4, err_msg=f"{what} [{k}]")


def gradients():
    """Pseudo-gradients, exact gradients and predictions, in every mode and placement (conv units, batch norm)."""
    video, labels = random_clip((2, 11, 8, 8, 3)), np.array([0, 3])
    # Every mode on grouped units; the shortcuts' crossings on the other placements.
    cases = [("grouped", mode) for mode in MODES] + [(name, "skip_sideways") for name in PLACEMENTS
                                                     if name != "grouped"]
    for name, mode in cases:
        devices = PLACEMENTS[name]
        placed, alone = _pair(devices, mode)
        placed.build(video.shape)
        alone.build(video.shape)
        alone.set_weights(placed.get_weights())
        got = placed.pseudo_gradients(video, labels)
        _close(got, alone.pseudo_gradients(video, labels), f"{name} {mode} pseudo-gradients")
        assert min(float(np.abs(np.asarray(g)).max()) for g in got[:-2]) > 0, "a unit got no gradient"
        _close(placed.exact_gradients(video, labels), alone.exact_gradients(video, labels), f"{name} {mode} exact")
        _close([placed.predict(video, verbose=0)], [alone.predict(video, verbose=0)], f"{name} {mode} predict")
        # One program per device group: each unit's gradients come back on its own device.
        assert placed.engine.programs, f"{name} {mode}: not on per-device programs"
        for v, g in zip(placed.trainable_variables, got, strict=True):
            unit = next(k for k, stage in enumerate(placed.stages) if any(v is w for w in stage.trainable_variables))
            assert g.devices() == {placed.engine.place.group_devices[placed.engine.place.stage_of[unit]]}, \
                f"{name} {mode}: {v.path} is on {g.devices()}"
    print("ok gradients")


def masking():
    """The ablation without the mask (`masking=False`) on per-device programs: the one-device gradients."""
    video, labels = random_clip((2, 11, 8, 8, 3)), np.array([0, 3])
    for mode in ("sideways", "skip_sideways"):
        placed, alone = _pair(PLACEMENTS["one_per_device"], mode, masking=False)
        masked = _model(PLACEMENTS["one_per_device"], mode)
        for model in (placed, alone, masked):
            model.build(video.shape)
        alone.set_weights(placed.get_weights())
        masked.set_weights(placed.get_weights())
        assert placed.engine.programs and not placed.engine.masking, mode
        got = placed.pseudo_gradients(video, labels)
        _close(got, alone.pseudo_gradients(video, labels), f"{mode} unmasked pseudo-gradients")
        assert not np.allclose(np.asarray(got[0]), np.asarray(masked.pseudo_gradients(video, labels)[0])), mode
    print("ok masking")


def auto():
    """`devices="auto"` spreads the units over every device by time, with the one-device gradients."""
    video, labels = random_clip((2, 11, 8, 8, 3)), np.array([0, 3])
    placed, alone = _pair("auto", "skip_sideways")
    placed.build(video.shape)
    alone.build(video.shape)
    assert len(set(placed.devices)) == NUM_DEVICES and placed.devices == sorted(placed.devices), placed.devices
    assert placed.get_config()["devices"] == "auto"
    alone.set_weights(placed.get_weights())
    _close(placed.pseudo_gradients(video, labels), alone.pseudo_gradients(video, labels), "auto pseudo-gradients")
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
    model = _model(PLACEMENTS["grouped"], "skip_sideways", lambda: [keras.layers.Dense(384, activation="tanh")
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
        placed, alone = _pair(PLACEMENTS["grouped"], mode)
        placed.build(video.shape)
        if placed.engine.programs:  # each unit's variables made on its group's device
            _where_they_run(placed, slots=False)
        alone.build(video.shape)
        alone.set_weights(placed.get_weights())
        a = placed.fit(video, labels, batch_size=2, epochs=2, verbose=0, shuffle=False).history
        b = alone.fit(video, labels, batch_size=2, epochs=2, verbose=0, shuffle=False).history
        _close(placed.get_weights(), alone.get_weights(), f"{mode} weights after fit")
        _close(a["loss"], b["loss"], f"{mode} loss")
        _close([placed.evaluate(video, labels, verbose=0)], [alone.evaluate(video, labels, verbose=0)], f"{mode} eval")
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
        device = place.group_devices[place.stage_of[k]]
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
        placed, alone = _pair(PLACEMENTS["one_per_device"], mode, lambda: dense_units(5), **options)
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
            _close([a["loss"]], [b["loss"]], f"{mode} {options} loss")
        _close(placed.get_weights(), alone.get_weights(), f"{mode} {options} weights after two chunks")
        if placed.stateful:
            _close(keras.tree.flatten(placed.stream_state.value()), keras.tree.flatten(alone.stream_state.value()),
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
            _close(placed.pseudo_gradients(video, labels), alone.pseudo_gradients(video, labels), "pseudo-gradients")
        a = placed.fit(video, labels, batch_size=2, epochs=2, verbose=0, shuffle=False).history
        b = alone.fit(video, labels, batch_size=2, epochs=2, verbose=0, shuffle=False).history
        _close(a["loss"], b["loss"], f"{options} loss with regularizers")
        _close(placed.get_weights(), alone.get_weights(), f"{options} weights after fit")
        _close([placed.evaluate(video, labels, verbose=0)], [alone.evaluate(video, labels, verbose=0)],
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
        placed = _model(devices, "bp")
        placed.build(video.shape)
        runtimes = ("programs", "mesh") if len(set(devices)) > 1 else ("mesh",)
        for labels, w in ((clip_labels, None), (frame_labels, weights)):
            exact = placed.exact_gradients(video, labels, w)
            for runtime in runtimes:
                function = gp.gradient_function(placed, runtime)
                params = [v.value for v in placed.trainable_variables]
                states = [v.value for v in placed.non_trainable_variables]
                got, loss = function(params, states, video, labels, w)
                _close(got, exact, f"gpipe {runtime} {devices}")
                assert min(float(np.abs(np.asarray(g)).max()) for g in got[:-2]) > 1e-3
                assert np.isfinite(float(loss)) and float(loss) > 0
    print("ok gpipe")


def data_and_stages():
    """2 data replicas x 2 stages (a Keras distribution over a (batch, stage) mesh): `fit` equals one
    device; with batch norm (each replica normalizing by its own clips' statistics, as under
    MirroredStrategy) the gradients are the mean of one device's on each replica's clips, and the
    moving statistics the mean of theirs."""
    if NUM_DEVICES < 4:
        print(f"skipped data_and_stages: 2 x 2 needs 4 devices, {PLATFORM} has {NUM_DEVICES}")
        return
    video, labels = random_clip((4, 9, 8, 8, 3)), np.array([0, 1, 2, 3])
    plain = functools.partial(conv_units, batch_norm=False)
    for mode in ("sideways", "skip_sideways"):
        keras.distribution.set_distribution(None)
        alone = _model(None, mode, plain)
        alone.build(video.shape)
        start = alone.get_weights()
        b = alone.fit(video, labels, batch_size=4, epochs=3, verbose=0, shuffle=False).history
        predicted = alone.predict(video, verbose=0)
        halves = [_model(None, mode) for _ in range(2)]
        for model in halves:
            model.build(video.shape)
        keras.distribution.set_distribution(sw.parallel.data_and_stages(2, devices=names(0, 1, 2, 3)))
        assert sw.parallel.stage_devices() == names(0, 1)
        placed = _model(names(0, 0, 1, 1, 1), mode, plain)
        placed.build(video.shape)
        placed.set_weights(start)
        a = placed.fit(video, labels, batch_size=4, epochs=3, verbose=0, shuffle=False).history
        _close(placed.get_weights(), alone.get_weights(), f"{mode} weights after fit on 2 x 2 devices")
        _close(a["loss"], b["loss"], f"{mode} loss")
        _close([placed.predict(video, verbose=0)], [predicted], f"{mode} predict on 2 x 2")
        # Batch norm: per replica, then averaged.
        normed = _model(names(0, 0, 1, 1, 1), mode)
        normed.build(video.shape)
        normed.set_weights(halves[0].get_weights())
        got = normed.pseudo_gradients(video, labels)
        normed.fit(video, labels, batch_size=4, epochs=1, verbose=0, shuffle=False)
        keras.distribution.set_distribution(None)
        want = [model.pseudo_gradients(video[i * 2:i * 2 + 2], labels[i * 2:i * 2 + 2])
                for i, model in enumerate(halves)]
        _close(got, [(x + y) / 2 for x, y in zip(*want, strict=True)], f"{mode} batch-norm gradients on 2 x 2")
        for i, model in enumerate(halves):
            model.fit(video[i * 2:i * 2 + 2], labels[i * 2:i * 2 + 2], batch_size=2, epochs=1, verbose=0)
        _close([v.numpy() for v in normed.non_trainable_variables],
               [(x.numpy() + y.numpy()) / 2 for x, y in zip(halves[0].non_trainable_variables,
                                                            halves[1].non_trainable_variables, strict=True)],
               f"{mode} batch-norm moving statistics on 2 x 2")
        keras.distribution.set_distribution(sw.parallel.data_and_stages(2, devices=names(0, 1, 2, 3)))
        place = placed.engine.place
        assert placed.engine.programs and place.replicas == 2, (placed.engine.programs, place)
        # Each group over the same stage of both replicas: parameters on both, clips split between them.
        for replicated, batched in place.shardings:
            assert len(replicated.device_set) == 2 and batched.spec == jax.sharding.PartitionSpec("batch"), batched
        # A stateful stream with updates inside, cut in two chunks, on 2 x 2 devices.
        keras.distribution.set_distribution(None)
        streams = []
        for distribution in (None, sw.parallel.data_and_stages(2, devices=names(0, 1, 2, 3))):
            keras.distribution.set_distribution(distribution)
            model = _model(None if distribution is None else names(0, 1, 1, 0, 1), mode, lambda: dense_units(5),
                           update_every=3, stateful=True)
            model.build((4, 7, 6))
            streams.append(model)
        streams[0].set_weights(streams[1].get_weights())
        clip = random_clip((4, 14, 6))
        frames = np.array([[0] * 14, [2] * 14, [1] * 14, [1] * 14])
        for chunk in (slice(0, 7), slice(7, 14)):
            got = []
            for model, distribution in zip(streams, (None, sw.parallel.data_and_stages(2, devices=names(0, 1, 2, 3))),
                                           strict=True):
                keras.distribution.set_distribution(distribution)
                # fit, not train_on_batch: Keras 3.10's train_on_batch under a distribution fails without weights.
                history = model.fit(clip[:, chunk], frames[:, chunk], batch_size=4, verbose=0, shuffle=False)
                got.append(history.history["loss"][0])
            _close([got[1]], [got[0]], f"{mode} stream loss on 2 x 2 devices")
        _close(streams[1].get_weights(), streams[0].get_weights(), f"{mode} stream weights on 2 x 2 devices")
        try:
            sw.SidewaysModel(dense_units(3), devices=names(0, 1, 2))
        except ValueError as error:
            assert f"devices[2]='{PLATFORM}:2' is not on the stage axis of the first data replica" in str(error), error
        else:
            raise AssertionError("a device of the second replica was accepted")
    keras.distribution.set_distribution(None)
    print("ok data_and_stages")


def programs():
    """Per-device programs: each parameter lives on its group's device after `fit`; `check_finite`
    stops a step there and keeps the weights; weights saved from it load into one device."""
    import tempfile

    from sideways_tf.core import frame_loop
    from sideways_tf.core import programs as runtime

    if PLATFORM == "cpu":
        # The XLA options of GPU steps are none on a CPU: an option valid everywhere takes their
        # path here (a step traced inside Keras' shape inference must go without them).
        runtime.compiler_options = lambda device: {"xla_gpu_graph_min_graph_size": 1}
    video, labels = random_clip((2, 9, 8, 8, 3)), np.array([0, 3])
    placed, alone = _pair(PLACEMENTS["grouped"], "skip_sideways", check_finite=True)
    for model in (placed, alone):
        model.build(video.shape)
    alone.set_weights(placed.get_weights())
    placed.fit(video, labels, epochs=2, batch_size=2, verbose=0)
    place = placed.engine.place
    assert placed.engine.programs and place.num_groups == 2
    for k, stage in enumerate(placed.stages):
        for v in stage.trainable_variables:
            assert v.value.devices() == {place.group_devices[place.stage_of[k]]}, (v.path, v.value.devices())
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
    _close(placed.get_weights(), before, "weights after the refused step", atol=0)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "placed.weights.h5")
        placed.save_weights(path)
        alone.load_weights(path)
    _close([alone.predict(video, verbose=0)], [placed.predict(video, verbose=0)], "predict after load_weights")
    # Compiled again with another loss, the per-device steps are traced again with it.
    first = placed.pseudo_gradients(video, labels)
    for dispatch in frame_loop.DISPATCH:
        place.dispatch = dispatch
        _close(placed.pseudo_gradients(video, labels), first, f"dispatch={dispatch}", atol=0)
    place.dispatch = "workers"
    for model in (placed, alone):
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                                      ignore_class=3))
    again = placed.pseudo_gradients(video, labels)
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(first, again, strict=True)) > 1e-4
    _close(again, alone.pseudo_gradients(video, labels), "gradients after compile")
    print("ok programs")


def replicas_reduce_once():
    """Data x depth: a group's step all-reduces no array across the replicas, as with one replica: each
    replica keeps its own gradient sums, merged once per update (`core.replicas`). Dense units."""
    if NUM_DEVICES < 4:
        print(f"skipped replicas_reduce_once: 2 x 2 needs 4 devices, {PLATFORM} has {NUM_DEVICES}")
        return
    import re

    from benchmarks.group_steps import prepared

    video, labels = random_clip((4, 9, 6)), np.array([0, 1, 2, 0])
    found = {}
    for replicas, distribution in ((1, None), (2, sw.parallel.data_and_stages(2, devices=names(0, 1, 2, 3)))):
        keras.distribution.set_distribution(distribution)
        model = _model(names(0, 0, 1, 1), "sideways", lambda: dense_units(4))
        model.build(video.shape)
        ready = prepared(model, video, labels)
        for g, step in enumerate(ready.steps):
            text = step.lower(ready.params[g], ready.carries[g], dict(ready.inboxes[g]), *ready.inputs[g]).compile(
            ).as_text()
            results = re.findall(r"= (.*?) all-reduce(?:-start)?\(", text)
            found[replicas, g] = sum(1 for result in results if re.search(r"\[\d", result))
    keras.distribution.set_distribution(None)
    assert found[1, 0] == found[1, 1] == 0, found
    assert found[2, 0] == found[2, 1] == 0, f"array all-reduces per step, by (replicas, group): {found}"
    print("ok replicas_reduce_once")


CHECKS = {"gradients": gradients, "masking": masking, "programs": programs, "auto": auto, "no_copies": no_copies,
          "fit": fit, "streaming": streaming, "regularized": regularized, "gpipe": gpipe,
          "data_and_stages": data_and_stages, "replicas_reduce_once": replicas_reduce_once}

if __name__ == "__main__":
    assert keras.backend.backend() == "jax" and NUM_DEVICES >= 2, (PLATFORM, os.environ.get("XLA_FLAGS"))
    with sw.highest_precision():
        for check in sys.argv[1:] or CHECKS:
            CHECKS[check]()
