"""Data x depth checks of `stages_worker.py`: 2 data replicas x 2 groups equal one device, and a group's
step all-reduces nothing across the replicas."""

import functools

import jax
import keras
import numpy as np

import sideways_tf as sw
from tests.core.stages_setup import NUM_DEVICES, PLATFORM, close, model_on, names
from tests.helpers import conv_units, dense_units, random_clip


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
        alone = model_on(None, mode, plain)
        alone.build(video.shape)
        start = alone.get_weights()
        b = alone.fit(video, labels, batch_size=4, epochs=3, verbose=0, shuffle=False).history
        predicted = alone.predict(video, verbose=0)
        halves = [model_on(None, mode) for _ in range(2)]
        for model in halves:
            model.build(video.shape)
        keras.distribution.set_distribution(sw.parallel.data_and_stages(2, devices=names(0, 1, 2, 3)))
        assert sw.parallel.stage_devices() == names(0, 1)
        placed = model_on(names(0, 0, 1, 1, 1), mode, plain)
        placed.build(video.shape)
        placed.set_weights(start)
        a = placed.fit(video, labels, batch_size=4, epochs=3, verbose=0, shuffle=False).history
        close(placed.get_weights(), alone.get_weights(), f"{mode} weights after fit on 2 x 2 devices")
        close(a["loss"], b["loss"], f"{mode} loss")
        close([placed.predict(video, verbose=0)], [predicted], f"{mode} predict on 2 x 2")
        # Batch norm: per replica, then averaged.
        normed = model_on(names(0, 0, 1, 1, 1), mode)
        normed.build(video.shape)
        normed.set_weights(halves[0].get_weights())
        got = normed.pseudo_gradients(video, labels)
        normed.fit(video, labels, batch_size=4, epochs=1, verbose=0, shuffle=False)
        keras.distribution.set_distribution(None)
        want = [model.pseudo_gradients(video[i * 2:i * 2 + 2], labels[i * 2:i * 2 + 2])
                for i, model in enumerate(halves)]
        close(got, [(x + y) / 2 for x, y in zip(*want, strict=True)], f"{mode} batch-norm gradients on 2 x 2")
        for i, model in enumerate(halves):
            model.fit(video[i * 2:i * 2 + 2], labels[i * 2:i * 2 + 2], batch_size=2, epochs=1, verbose=0)
        close([v.numpy() for v in normed.non_trainable_variables],
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
            model = model_on(None if distribution is None else names(0, 1, 1, 0, 1), mode, lambda: dense_units(5),
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
            close([got[1]], [got[0]], f"{mode} stream loss on 2 x 2 devices")
        close(streams[1].get_weights(), streams[0].get_weights(), f"{mode} stream weights on 2 x 2 devices")
        try:
            sw.SidewaysModel(dense_units(3), devices=names(0, 1, 2))
        except ValueError as error:
            assert f"devices[2]='{PLATFORM}:2' is not on the stage axis of the first data replica" in str(error), error
        else:
            raise AssertionError("a device of the second replica was accepted")
    keras.distribution.set_distribution(None)
    print("ok data_and_stages")


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
        model = model_on(names(0, 0, 1, 1), "sideways", lambda: dense_units(4))
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
