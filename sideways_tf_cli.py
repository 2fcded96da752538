"""Console entry points of sideways_tf: `sideways-train`, `sideways-quickstart`, `sideways-stream`,
`sideways-reproduce`.

A module outside the package, so that TensorFlow can be imported before `sideways_tf` (whose
import pulls in Keras and its backend) with its C++ start-up banner silenced: the oneDNN and CUDA
notices that TensorFlow prints on stderr before its logging is set up, and, on a machine without
a GPU, the `failed call to cuInit` error. Python errors still reach stderr.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with stderr silenced at the file-descriptor level (TensorFlow backend only)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow

        tensorflow.config.list_physical_devices()  # CUDA's start-up (`failed call to cuInit` without a GPU)
    except ImportError:
        pass  # reported by whatever needs it, with stderr restored
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def train() -> None:
    import_tensorflow_quietly()
    from sideways_tf.cli import train as command

    command.run_main()


def quickstart() -> None:
    import_tensorflow_quietly()
    from sideways_tf.cli import quickstart as command

    command.run_main()


def stream() -> None:
    import_tensorflow_quietly()
    from sideways_tf.cli import stream as command

    command.run_main()


def reproduce() -> None:
    import_tensorflow_quietly()
    from sideways_tf.cli import reproduce as command

    command.run_main()


def run_experiment() -> None:
    """One run of a named experiment, quietly: the workers of `sideways-quickstart`.

    `python -c "import sideways_tf_cli; sideways_tf_cli.run_experiment()" NAME MODE MODEL_DIR VERBOSE [key=value ...]`
    """
    import_tensorflow_quietly()
    from sideways_tf.training import config as config_lib
    from sideways_tf.training import experiments, runner

    name, mode, model_dir, verbose, *overrides = sys.argv[1:]
    config = config_lib.apply_overrides(experiments.get(name), [f"mode={mode}", *overrides])
    runner.run(config_lib.validate(config), model_dir, verbose=int(verbose))
