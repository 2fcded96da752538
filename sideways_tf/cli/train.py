"""`sideways-train`: run one of the papers' experiments (or a variant) from the command line.

    sideways-train --list
    sideways-train --experiment quickstart --model_dir /tmp/run
    sideways-train --experiment skip_t1_vgg8_hmdb51 --mode sideways --data_dir ~/tfds \\
        --set epochs=50 --set learning_rate=1e-3
    sideways-train --experiment skip_t1_vgg8_hmdb51 --dry_run      # build the model and input spec only

Also `python -m sideways_tf.cli.train`.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from sideways_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("experiment", None, "A named experiment (see --list).")
flags.DEFINE_string("mode", None, "Override the experiment's training rule: bp, sideways, skip_sideways, "
                    "fa_skip_sideways.")
flags.DEFINE_string("model_dir", None, "Where TensorBoard logs, backups and results.json go.")
flags.DEFINE_string("data_dir", None, "Where tfds keeps prepared datasets.")
flags.DEFINE_string("manual_dir", None, "The downloaded files of hmdb51 / kinetics600 (first run only).")
flags.DEFINE_bool("download", False, "Let tfds download and prepare ucf101 (about 6.5 GB) when --data_dir lacks it.")
flags.DEFINE_multi_string("set", [], "key=value override of a config field (repeatable).")
flags.DEFINE_bool("list", False, "List the experiments and the sweeps, one line each, and exit.")
flags.DEFINE_string("sweep", None, "A named sweep (see --list): one run of the experiment per combination of its "
                    "values, each in a folder of its own under --model_dir, and a summary in sweep.json.")
flags.DEFINE_bool("dry_run", False, "Build the model and the input spec without data, then exit.")
flags.DEFINE_integer("backup_every", None, "Back up every N steps (default: every epoch).")
flags.DEFINE_bool("overwrite", False, "Replace the run that --model_dir holds (by default a finished run is "
                  "reported, not trained again, and a run of another configuration is refused).")
flags.DEFINE_enum("strategy", "auto", ["auto", "tpu", "gpu", "cpu", "multiworker"],
                  "Where to train: auto (a TPU, the TF_CONFIG workers or the local GPUs if there are any), tpu, "
                  "gpu, cpu or multiworker.")
flags.DEFINE_string("coordinator", None, "JAX with --strategy multiworker: process 0's host:port (TensorFlow reads "
                    "TF_CONFIG instead).")
flags.DEFINE_integer("num_processes", None, "JAX with --strategy multiworker: how many processes train together.")
flags.DEFINE_integer("process_id", None, "JAX with --strategy multiworker: this process's index, 0 to "
                     "num_processes - 1.")
flags.DEFINE_string("tpu", None, "The TPU's name or grpc:// address (default: TPU_NAME, COLAB_TPU_ADDR, this TPU VM).")


def _fail(message: str) -> None:
    common.fail("sideways-train", message)


def _config_line(name: str, config) -> str:
    """One short line: the experiment and the fields set apart from its defaults (--mode, --set)."""
    from sideways_tf.training import experiments

    defaults = dataclasses.asdict(experiments.get(name))
    changed = {k: v for k, v in dataclasses.asdict(config).items() if k != "description" and defaults.get(k) != v}
    settings = ", ".join(f"{k}={v!r}" for k, v in changed.items()) or "its defaults"
    return f"config: {name} with {settings} (sideways-train --experiment {name} --dry_run to inspect)"


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; flags only (see --help).")
    from sideways_tf.training import config as config_lib
    from sideways_tf.training import experiments

    if FLAGS.list:
        width = max(len(n) for n in experiments.EXPERIMENTS)
        for name, experiment in experiments.EXPERIMENTS.items():
            print(f"{name:<{width}}  [{experiment.mode}] {experiment.description}")
        for name, values in experiments.SWEEPS.items():
            grid = " x ".join(f"{key} in {list(options)}" for key, options in values.items())
            print(f"sweep {name}: {grid}")
        return
    if FLAGS.experiment is None:
        _fail("--experiment is required (see --list).")
    if FLAGS.backup_every is not None and FLAGS.backup_every < 1:
        _fail(f"--backup_every={FLAGS.backup_every}: must be a positive number of steps (unset: every epoch).")
    try:
        config = experiments.get(FLAGS.experiment)
        if FLAGS.mode is not None:
            config = config_lib.apply_overrides(config, [f"mode={FLAGS.mode}"])
        config = config_lib.validate(config_lib.apply_overrides(config, FLAGS.set))
        combinations = [] if FLAGS.sweep is None else [
            (settings, config_lib.validate(config_lib.apply_overrides(config, settings)))
            for settings in experiments.sweep(FLAGS.sweep)]
    except ValueError as error:
        _fail(str(error))
    from sideways_tf.training import runner

    if FLAGS.dry_run:
        model = runner.build_model(config)
        shortest = getattr(model, "min_clip_length", 1)
        if config.num_frames < shortest:
            _fail(f"config num_frames={config.num_frames}: a {model.depth}-unit model in mode {config.mode!r} needs "
                  f"clips of at least {shortest} frames (2D - 1) so that every unit learns.")
        print(f"{FLAGS.experiment}: mode={config.mode} model={config.model} input={runner.input_shape(config)} "
              f"parameters={model.count_params():,}")
        return
    if FLAGS.model_dir is None:
        _fail("--model_dir is required to train.")
    print(_config_line(FLAGS.experiment, config))
    from sideways_tf.training import distribution, sweeps

    try:
        strategy = distribution.strategy(FLAGS.strategy, tpu=FLAGS.tpu, coordinator=FLAGS.coordinator,
                                         num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)

        def train(config, model_dir: str) -> dict:
            return runner.run(config, model_dir, FLAGS.data_dir, backup_every=FLAGS.backup_every,
                              manual_dir=FLAGS.manual_dir, distribution=strategy, overwrite=FLAGS.overwrite,
                              download=FLAGS.download)

        if combinations:
            sweeps.run(FLAGS.sweep, combinations, FLAGS.model_dir, train, write=distribution.is_chief(strategy))
            return
        results = train(config, FLAGS.model_dir)
    except ValueError as error:
        _fail(str(error))
    print(runner.format_results(results))
    print(f"results: {FLAGS.model_dir}/results.json")


def run_main() -> None:
    """Console-script entry point (`--help` shows this command's flags)."""
    common.run(main, __name__)


if __name__ == "__main__":
    run_main()
