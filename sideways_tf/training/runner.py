"""Running one experiment: model, data, optimizer, callbacks, `fit`, evaluation, `results.json`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Optional

import keras
import tensorflow as tf

from sideways_tf import data, models
from sideways_tf.model import SidewaysModel
from sideways_tf.training import backup, run_dir, worker_loop
from sideways_tf.training import distribution as distribution_lib
from sideways_tf.training.callbacks import (
    EpochSummary,
    FramePredictionImages,
    FramesPerSecond,
    PseudoGradientFidelity,
    StopOnNonFinite,
)
from sideways_tf.training.config import Config, validate
from sideways_tf.training.schedules import make_schedule


def build_units(config: Config) -> list:
    """The units of `config.model` (a unit-list model)."""
    common = {"space_to_depth": config.space_to_depth, "width": config.width}
    if config.model == "small_cnn":
        return models.small_cnn(config.num_classes, **common)
    if config.model == "simple_cnn":
        return models.simple_cnn(config.num_classes, **common)
    if config.model == "vgg8":
        return models.vgg8(config.num_classes, dropout=config.dropout, **common)
    if config.model == "vgg16":
        return models.vgg16(config.num_classes, layers_per_unit=config.layers_per_unit, dropout=config.dropout,
                            **common)
    if config.model == "full_res":
        return models.full_res(**common)
    if config.model == "encoder_decoder":
        return models.encoder_decoder(**common)
    raise ValueError(f"config model={config.model!r} is not a list of units.")


def build_model(config: Config) -> keras.Model:
    """The model of `config`, built on its input shape `[B, T, R, R, 3]`."""
    if config.model in ("vgg16_3d", "causal_vgg16_3d"):
        model = models.vgg16_3d(config.num_classes, causal=config.model == "causal_vgg16_3d", dropout=config.dropout,
                                width=config.width, space_to_depth=config.space_to_depth,
                                frame_shape=(config.resolution, config.resolution, 3))
    else:
        model = SidewaysModel(build_units(config), mode=config.mode, fusion=config.fusion, shortcut=config.shortcut,
                              gradient_stats=True, update_every=config.update_every, masking=config.masking,
                              # StopOnNonFinite stops the run and says where, on every strategy.
                              stop_on_nonfinite_loss=False)
        model.build(input_shape(config))
    return model


def input_shape(config: Config) -> tuple:
    return (config.batch_size, config.num_frames, config.resolution, config.resolution, 3)


def build_optimizer(config: Config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam, SGD or momentum SGD with the schedule, decoupled weight decay and clipping by value."""
    schedule = make_schedule(config.schedule, config.learning_rate, steps_per_epoch, config.warmup_epochs,
                             config.decay_epochs, config.epochs)
    common = {"learning_rate": schedule, "clipvalue": config.clip_value,
              "weight_decay": config.weight_decay or None}
    if config.optimizer == "adam":
        return keras.optimizers.AdamW(**common) if config.weight_decay else keras.optimizers.Adam(**common)
    return keras.optimizers.SGD(momentum=config.momentum if config.optimizer == "momentum" else 0.0, **common)


def build_datasets(config: Config, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
                   download: bool = False):
    """`(train, evaluation)` datasets of `config`."""
    train = _load(config, config.train_split, data_dir, manual_dir, training=True, download=download,
                  num_examples=config.train_examples or config.num_examples,
                  montage=config.montage,
                  montage_shots=config.montage_shots)
    evaluation = _load(config, config.eval_split, data_dir, manual_dir, training=False, download=download)
    return train, evaluation


def whole_video_dataset(config: Config, data_dir: Optional[str] = None, manual_dir: Optional[str] = None):
    """The evaluation split one whole video per batch (every frame, central crop), for `whole_video_eval`."""
    return _load(config, config.eval_split, data_dir, manual_dir, training=False, whole_videos=True, batch_size=1)


def _load(config: Config, split: str, data_dir, manual_dir, **changes):
    """`data.load` of one split with `config`'s settings (`changes` override them)."""
    settings = dict(num_frames=config.num_frames, resolution=config.resolution, batch_size=config.batch_size,
                    stride=config.stride, data_dir=data_dir, manual_dir=manual_dir, root_dir=config.root_dir,
                    label_set=config.label_set, num_examples=config.num_examples, seed=config.seed,
                    future_offset=config.future_offset or None)
    dataset = data.load(config.dataset, split, **{**settings, **changes})
    if config.future_offset == 0:  # auto-encoding: the targets are the frames themselves
        dataset = dataset.map(lambda v, y: (v, v))
    return dataset


def compile_model(model: keras.Model, config: Config, steps_per_epoch: int) -> None:
    if config.frame_prediction:
        loss, metrics = keras.losses.MeanSquaredError(), []
    else:
        loss, metrics = keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"]
    model.compile(optimizer=build_optimizer(config, steps_per_epoch), loss=loss, metrics=metrics)


class _FirstEpoch(keras.callbacks.Callback):
    """Remembers the first epoch this process ran (after a resume it is not 0)."""

    first_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch


def _steps(dataset, configured: Optional[int], what: str) -> int:
    if configured is not None:
        return configured
    count = int(tf.data.experimental.cardinality(dataset))
    if count == 0:
        raise ValueError(f"the {'training' if what == 'steps_per_epoch' else 'evaluation'} split yields no batch: "
                         "its clips are fewer than batch_size (the last, smaller batch is dropped); lower "
                         "batch_size or raise num_examples.")
    if count < 0:
        raise ValueError(f"cannot count the batches of this dataset: set `--set {what}=N`.")
    return count


def _fit(model, train, evaluation, config: Config, steps_per_epoch: int, steps_done: int, callbacks, verbose: int):
    """`fit` from optimizer step `steps_done` on: the rest of an interrupted epoch, then the others.

    Returns the merged history (`{metric: [one value per epoch trained here]}`).
    """
    # The datasets shuffle themselves (shuffle=False only silences Keras' warning about it).
    common = dict(validation_data=evaluation, validation_steps=config.validation_steps, callbacks=callbacks,
                  verbose=2 if verbose == 2 else 0, shuffle=False)
    history: dict = {}
    epoch, left = backup.remaining_schedule(steps_done, steps_per_epoch)
    if left < steps_per_epoch and epoch < config.epochs:  # resumed in the middle of an epoch
        partial = model.fit(train.repeat(), initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=left, **common)
        history = {k: list(v) for k, v in partial.history.items()}
        epoch += 1
    if epoch < config.epochs and not getattr(model, "stop_training", False):
        train_input = train.repeat() if config.steps_per_epoch else train
        rest = model.fit(train_input, initial_epoch=epoch, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
                         **common)
        for key, values in rest.history.items():
            history.setdefault(key, []).extend(values)
    return history


def run(config: Config, model_dir: str, data_dir: Optional[str] = None, verbose: int = 1,
        backup_every: Optional[int] = None, manual_dir: Optional[str] = None, distribution=None,
        overwrite: bool = False, download: bool = False) -> dict:
    """Trains and evaluates `config`, writing TensorBoard logs, backups and `results.json` in `model_dir`.

    An interrupted run started again with the same `model_dir` and configuration resumes from its
    last backup; a finished one is not trained again (its results are returned, with
    `"already_finished": True`); another configuration in the same `model_dir` is refused
    (`run_dir.claim`).

    Over several processes (`strategy("multiworker")`), every process calls `run` with the same
    arguments: the chief alone writes `model_dir` (the others write to a scratch folder), and
    all of them resume from the chief's backup. Under TensorFlow the training loop is
    `worker_loop.WorkerLoop`, since Keras' `fit` fails under `MultiWorkerMirroredStrategy`.

    Args:
      verbose: 0 silent; 1 a header line and one compact line per epoch (per-unit gradient
        statistics go to TensorBoard only); 2 Keras' own progress output.
      distribution: what `sw.training.strategy(...)` returns; the model and its optimizer are
        made in its scope and `config.batch_size` is the global batch (default: none).
      overwrite: replace whatever run `model_dir` holds.
      download: let tfds download and prepare a dataset `data_dir` lacks (UCF101: about 6.5 GB);
        without it a missing dataset is a `ValueError` saying how large it is and how to start it.

    Returns:
      The results dictionary (also in `model_dir/results.json`).
    """
    validate(config)
    # Keras' fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585): our own loop then.
    multiworker = isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy)
    chief = distribution_lib.is_chief(distribution)
    # Only the chief writes the run's folder; every process reads its backups and its verdict.
    finished = run_dir.claim(model_dir, config, overwrite) if chief else None
    distribution_lib.barrier(distribution)
    if not chief:
        finished = run_dir.finished(model_dir, config)
    if finished is not None:
        if verbose and chief:
            print(f"{model_dir} holds this run, finished: its results follow (--overwrite trains it again).")
        return {**finished, "already_finished": True}
    write_dir = model_dir if chief else tempfile.mkdtemp(prefix="sideways_worker_")
    try:
        return _train_and_evaluate(config, model_dir, write_dir, data_dir, manual_dir, distribution, multiworker,
                                   verbose if chief else 0, backup_every, download)
    finally:
        if write_dir != model_dir:
            shutil.rmtree(write_dir, ignore_errors=True)


def _train_and_evaluate(config: Config, model_dir: str, write_dir: str, data_dir, manual_dir, distribution,
                        multiworker: bool, verbose: int, backup_every: Optional[int], download: bool = False) -> dict:
    """`run` once the folder is claimed: `write_dir` is `model_dir` for the chief, a scratch folder for the others."""
    keras.utils.set_random_seed(config.seed)
    train, evaluation = build_datasets(config, data_dir, manual_dir, download)
    steps_per_epoch = _steps(train, config.steps_per_epoch, "steps_per_epoch")
    with distribution.scope() if distribution is not None else contextlib.nullcontext():
        model = build_model(config)
        compile_model(model, config, steps_per_epoch)
        steps_done = backup.restore(model, os.path.join(model_dir, run_dir.BACKUP_DIR))  # may build the optimizer
    probe = next(iter(evaluation))
    first_epoch = _FirstEpoch()
    non_finite = StopOnNonFinite()
    callbacks = [
        first_epoch,
        non_finite,
        FramesPerSecond(config.batch_size * config.num_frames),
        keras.callbacks.TensorBoard(log_dir=write_dir, update_freq="epoch"),
        # Two copies kept: a run killed while writing one resumes from the other.
        backup.Backup(os.path.join(write_dir, run_dir.BACKUP_DIR), every=backup_every),
    ]
    if config.fidelity_every and isinstance(model, SidewaysModel):
        callbacks.append(PseudoGradientFidelity(probe, config.fidelity_every, os.path.join(write_dir, "train")))
    if config.frame_prediction:
        callbacks.append(FramePredictionImages(probe, os.path.join(write_dir, "validation")))
    if verbose == 1:
        callbacks.append(EpochSummary(config.epochs))
        units = f"{model.depth} units, " if isinstance(model, SidewaysModel) else ""
        print(f"{config.mode} trains {config.model} ({units}{model.count_params():,} parameters) on "
              f"{config.dataset}: {config.epochs} epoch{'s' if config.epochs != 1 else ''} of "
              f"{steps_per_epoch} batches of {config.batch_size} x {config.num_frames} frames; "
              f"logs: tensorboard --logdir {model_dir}", flush=True)
    # Validation during training scores central clips; the final evaluation follows the papers'
    # protocol where the config asks for it (every frame of each test video).
    final = whole_video_dataset(config, data_dir, manual_dir) if config.whole_video_eval else evaluation
    if multiworker:
        loop = worker_loop.WorkerLoop(model, distribution)
        history = loop.fit(train, config.epochs, steps_per_epoch, steps_done, evaluation, config.validation_steps,
                           callbacks)
    else:
        history = _fit(model, train, evaluation, config, steps_per_epoch, steps_done, callbacks, verbose)
    if non_finite.problem:
        raise ValueError(f"training stopped: {non_finite.problem}. Lower the learning rate, check the inputs for "
                         f"NaN or infinite values, or clip gradients; results.json was not written.")
    # The last epoch's validation already scored these weights on these clips.
    last_validation = {k[len("val_"):]: v[-1] for k, v in history.items() if k.startswith("val_") and v}
    if multiworker:
        scores = loop.evaluate(final, config.validation_steps)
    elif final is evaluation and last_validation:
        scores = last_validation
    else:
        scores = model.evaluate(final, steps=config.validation_steps, return_dict=True, verbose=0)
    results = {
        "config": dataclasses.asdict(config),
        "evaluation_protocol": "whole videos" if config.whole_video_eval else "central clips",
        "evaluation": {k: float(v) for k, v in scores.items()},
        "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "first_epoch_this_run": first_epoch.first_epoch,
        "parameters": int(model.count_params()),
        "history": {k: [float(x) for x in v] for k, v in history.items()},
    }
    if not config.frame_prediction:
        results["chance_accuracy"] = 1.0 / config.num_classes
    if write_dir == model_dir:
        with open(os.path.join(model_dir, run_dir.RESULTS_FILE), "w") as f:
            json.dump(results, f, indent=1)
        shutil.rmtree(os.path.join(model_dir, run_dir.BACKUP_DIR), ignore_errors=True)  # finished: nothing to resume
    return results


def format_results(results: dict) -> str:
    """A short table of a run's evaluation."""
    lines = [f"{'metric':<20}{'value':>10}"]
    for key, value in results["evaluation"].items():
        lines.append(f"{key:<20}{value:>10.4f}")
    if "chance_accuracy" in results:
        lines.append(f"{'chance accuracy':<20}{results['chance_accuracy']:>10.4f}")
    return "\n".join(lines)
