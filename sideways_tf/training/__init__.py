"""Training front end: configs, the papers' experiments, schedules, callbacks, the runner."""

from sideways_tf.training.callbacks import FramePredictionImages, FramesPerSecond, PseudoGradientFidelity
from sideways_tf.training.config import Config, apply_overrides, validate
from sideways_tf.training.distribution import STRATEGIES, strategy
from sideways_tf.training.experiments import EXPERIMENTS
from sideways_tf.training.logs import read_scalars

__all__ = ["EXPERIMENTS", "STRATEGIES", "Config", "FramePredictionImages", "FramesPerSecond", "PseudoGradientFidelity",
           "apply_overrides", "read_scalars", "strategy", "validate"]
