"""The training configuration: one frozen dataclass, overrides from `key=value` strings, validation."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Optional, Sequence

from sideways_tf.core.schedule import MODES
from sideways_tf.core.shortcut import FUSIONS, SHORTCUTS

MODELS = ("small_cnn", "simple_cnn", "vgg8", "vgg16", "full_res", "encoder_decoder", "vgg16_3d",
          "causal_vgg16_3d")
UNIT_MODELS = MODELS[:6]
DENSE_OUTPUT_MODELS = ("full_res", "encoder_decoder")
DATASETS = ("moving_shapes", "ucf101", "hmdb51", "kinetics600", "video_folder")
DATASET_CLASSES = {"ucf101": 101, "hmdb51": 51, "kinetics600": 600}
OPTIMIZERS = ("adam", "sgd", "momentum")
SCHEDULES = ("paper", "cosine", "constant")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs. Epoch-based fields count epochs of `steps_per_epoch` steps."""

    description: str = ""
    # data
    dataset: str = "moving_shapes"
    train_split: str = "train"
    eval_split: str = "test"
    label_set: str = "motion"
    num_examples: Optional[int] = None
    train_examples: Optional[int] = None  # moving shapes: clips in the training split (default num_examples)
    root_dir: Optional[str] = None
    num_frames: int = 64
    resolution: int = 112
    batch_size: int = 8
    stride: int = 1
    future_offset: Optional[int] = None
    montage: Optional[str] = None
    montage_shots: int = 2
    whole_video_eval: bool = False  # the final evaluation over every frame of each test video
    # model
    model: str = "vgg8"
    num_classes: int = 51
    width: float = 1.0
    dropout: float = 0.0
    space_to_depth: bool = True
    layers_per_unit: int = 2
    mode: str = "sideways"
    fusion: str = "concat"
    shortcut: str = "auto"
    update_every: Optional[int] = None  # None: one update per clip; L: every L frames (streaming)
    masking: bool = True  # False: the ablation without the mask gamma (SidewaysModel's `masking`)
    # optimisation
    optimizer: str = "adam"
    learning_rate: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip_value: Optional[float] = 1.0
    schedule: str = "paper"
    warmup_epochs: int = 5
    decay_epochs: tuple = (100, 200)
    epochs: int = 300
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    # monitoring
    fidelity_every: int = 0
    seed: int = 0

    @property
    def frame_prediction(self) -> bool:
        return self.future_offset is not None


def _parse(field: dataclasses.Field, hint, text: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union and type(None) in args:
        if text.lower() in ("none", "null", ""):
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"--set {field.name}: expected true or false, got {text!r}.")
    if hint is tuple or typing.get_origin(hint) is tuple:
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError as error:
            raise ValueError(f"--set {field.name}: expected comma-separated integers such as 100,200; got "
                             f"{text!r}.") from error
    try:
        return hint(text)
    except ValueError as error:
        raise ValueError(f"--set {field.name}: expected {hint.__name__}, got {text!r}.") from error


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Returns `config` with `key=value` overrides applied (values parsed by the field's type).

    Raises:
      ValueError: naming an unknown key, a malformed override or a value of the wrong type.
    """
    hints = typing.get_type_hints(Config)
    fields = {f.name: f for f in dataclasses.fields(Config)}
    changes = {}
    for override in overrides:
        if "=" not in override:
            raise ValueError(f"--set expects key=value; got {override!r}.")
        key, value = override.split("=", 1)
        key = key.strip()
        if key not in fields:
            raise ValueError(f"--set: unknown config key {key!r}; known keys: {', '.join(sorted(fields))}.")
        changes[key] = _parse(fields[key], hints[key], value.strip())
    return dataclasses.replace(config, **changes)


def _dataset_classes(config: Config):
    """The class count of the configured dataset, where it is fixed (None for a folder of videos)."""
    if config.dataset == "moving_shapes":
        from sideways_tf.data.moving_shapes import NUM_CLASSES

        return NUM_CLASSES.get(config.label_set)
    return DATASET_CLASSES.get(config.dataset)


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"config {key}={value!r}: must be one of {', '.join(repr(a) for a in allowed)}.")


def validate(config: Config) -> Config:
    """Refuses unknown choices and impossible combinations, naming the key. Returns `config`."""
    _choice("dataset", config.dataset, DATASETS)
    _choice("model", config.model, MODELS)
    _choice("mode", config.mode, MODES)
    _choice("fusion", config.fusion, FUSIONS)
    _choice("shortcut", config.shortcut, SHORTCUTS)
    _choice("optimizer", config.optimizer, OPTIMIZERS)
    _choice("schedule", config.schedule, SCHEDULES)
    if config.montage is not None:
        _choice("montage", config.montage, ("concat", "interleave"))
    for key in ("num_frames", "resolution", "batch_size", "stride", "epochs", "num_classes"):
        if getattr(config, key) < 1:
            raise ValueError(f"config {key}={getattr(config, key)!r}: must be positive.")
    for key in ("montage_shots", "layers_per_unit"):
        if getattr(config, key) < 1:
            raise ValueError(f"config {key}={getattr(config, key)!r}: must be positive.")
    for key in ("warmup_epochs", "fidelity_every"):
        if getattr(config, key) < 0:
            raise ValueError(f"config {key}={getattr(config, key)!r}: must be 0 or more.")
    if not math.isfinite(config.width) or config.width <= 0:
        raise ValueError(f"config width={config.width!r}: must be a positive width multiplier (1.0: the paper's "
                         f"widths).")
    if not math.isfinite(config.dropout) or not 0 <= config.dropout < 1:
        raise ValueError(f"config dropout={config.dropout!r}: must be a rate in [0, 1).")
    if not math.isfinite(config.momentum) or not 0 <= config.momentum < 1:
        raise ValueError(f"config momentum={config.momentum!r}: must be in [0, 1).")
    if not math.isfinite(config.weight_decay) or config.weight_decay < 0:
        raise ValueError(f"config weight_decay={config.weight_decay!r}: must be 0 or more.")
    if not math.isfinite(config.learning_rate) or config.learning_rate <= 0:
        raise ValueError(f"config learning_rate={config.learning_rate!r}: must be a positive finite number.")
    if config.clip_value is not None and (not math.isfinite(config.clip_value) or config.clip_value <= 0):
        raise ValueError(f"config clip_value={config.clip_value!r}: must be a positive finite number, or none to "
                         "train without clipping (Keras reads 0 as no clipping too, silently).")
    for key in ("steps_per_epoch", "validation_steps", "num_examples", "train_examples"):
        value = getattr(config, key)
        if value is not None and value < 1:
            raise ValueError(f"config {key}={value!r}: must be positive, or none (the whole split).")
    if config.train_examples is not None and config.dataset != "moving_shapes":
        raise ValueError(f"config train_examples={config.train_examples!r}: sizes the training split of "
                         f"'moving_shapes' only; dataset {config.dataset!r} uses every clip of its split.")
    if not config.masking and (config.model not in UNIT_MODELS or config.mode == "bp"):
        raise ValueError(f"config masking=False: an ablation of the pipelined rules; mode {config.mode!r} with "
                         f"model {config.model!r} has no warm-up to count.")
    if config.model not in UNIT_MODELS and config.mode != "bp":
        raise ValueError(f"config mode={config.mode!r}: model {config.model!r} is a 3D baseline trained with "
                         "mode='bp' only.")
    if (config.model in DENSE_OUTPUT_MODELS) != config.frame_prediction:
        raise ValueError(f"config future_offset={config.future_offset!r}: models {DENSE_OUTPUT_MODELS} predict frames "
                         f"and need it set (0 for auto-encoding); model {config.model!r} "
                         f"{'needs it' if config.model in DENSE_OUTPUT_MODELS else 'must not have it'}.")
    if not config.frame_prediction:
        classes = _dataset_classes(config)
        if classes is not None and classes != config.num_classes:
            labels = f" with label_set={config.label_set!r}" if config.dataset == "moving_shapes" else ""
            raise ValueError(f"config num_classes={config.num_classes}: dataset {config.dataset!r}{labels} has "
                             f"{classes} classes.")
    if any(e < 1 for e in config.decay_epochs) or list(config.decay_epochs) != sorted(set(config.decay_epochs)):
        raise ValueError(f"config decay_epochs={config.decay_epochs!r}: must be increasing positive epochs.")
    if config.update_every is not None and config.update_every < 1:
        raise ValueError(f"config update_every={config.update_every!r}: must be positive, or none (once per clip).")
    if config.frame_prediction and config.montage is not None:
        raise ValueError("config montage: montage shots are for classification, not frame prediction.")
    return config
