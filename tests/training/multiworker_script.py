"""One process of a two-process training run on localhost (started by `test_multiworker.py`).

    python multiworker_script.py tf INDEX PORT0 PORT1 OUT     # TensorFlow workers, WorkerLoop; weights to OUT
    python multiworker_script.py jax INDEX PORT - OUT         # JAX processes, DataParallel and fit
    python multiworker_script.py single - - - OUT             # the same steps in one process, with fit
    python multiworker_script.py cli INDEX PORT0 PORT1 CRASH ARGS...
        # sideways-train --strategy multiworker ARGS (TF_CONFIG under TensorFlow, --coordinator ...
        # under JAX); with CRASH > 0, worker 1 dies (exit 3) right after its backup at that step

Every address is a loopback one; nothing leaves this machine.
"""

import json
import os
import sys

WHAT, INDEX, PORT0, PORT1, OUT = sys.argv[1:6]
JAX = os.environ.get("KERAS_BACKEND") == "jax"
if WHAT in ("tf", "cli") and not JAX:
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{PORT0}", f"127.0.0.1:{PORT1}"]},
                                          "task": {"type": "worker", "index": int(INDEX)}})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

STEPS, SHAPE = 3, (8, 9, 8, 8, 3)


def _model():
    import keras

    import sideways_tf as sw
    from tests.helpers import SPARSE_CE, conv_units

    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(conv_units(batch_norm=False, num_classes=4), mode="skip_sideways")
    model.build(SHAPE)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=SPARSE_CE, metrics=["accuracy"])
    return model


def _data():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    video = rng.normal(size=(STEPS * SHAPE[0],) + SHAPE[1:]).astype("float32")
    labels = rng.integers(0, 4, size=(STEPS * SHAPE[0],)).astype("int32")
    return tf.data.Dataset.from_tensor_slices((video, labels)).batch(SHAPE[0])


def _cli(crash_after: int, args: list) -> None:
    from sideways_tf.cli import common, train
    from sideways_tf.training import backup

    if crash_after and INDEX == "1":
        save = backup.Backup.save

        def save_then_die(self):
            save(self)
            if int(self.model.optimizer.iterations.numpy()) >= crash_after:
                os._exit(3)

        backup.Backup.save = save_then_die
    cluster = ["--coordinator", f"127.0.0.1:{PORT0}", "--num_processes", "2", "--process_id", INDEX] if JAX else []
    common.run(train.main, train.__name__, argv=["sideways-train", "--strategy", "multiworker", *cluster, *args])


def main():
    if WHAT == "cli":
        _cli(int(OUT), sys.argv[6:])
        return
    if WHAT == "single":
        model = _model()
        history = model.fit(_data(), epochs=1, verbose=0).history
    elif WHAT == "jax":
        import keras

        from sideways_tf.training import distribution

        distribution.strategy("multiworker", coordinator=f"127.0.0.1:{PORT0}", num_processes=2,
                              process_id=int(INDEX))
        assert len(keras.distribution.list_devices()) == 2
        model = _model()
        history = model.fit(_data(), epochs=1, verbose=0).history
    else:
        import tensorflow as tf

        from sideways_tf.training.worker_loop import WorkerLoop

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        with strategy.scope():
            model = _model()
        history = WorkerLoop(model, strategy).fit(_data(), epochs=1, steps_per_epoch=STEPS)
    np.savez(OUT, *model.get_weights(), loss=np.array(history["loss"]))


if __name__ == "__main__":
    main()
