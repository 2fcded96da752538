"""`SidewaysModel`: a chain of Keras units trained with BP, Sideways or Skip-Sideways.

The Keras front end only: argument checks, building, and the train/test steps around the pure
functions of `sideways_tf.core.engine`. The same code runs under `KERAS_BACKEND=tensorflow`
(stateful steps) and `KERAS_BACKEND=jax` (Keras' stateless `train_step(state, data)` contract:
the stateful step runs inside a `keras.StatelessScope` and the new state is read back from it).
Only Keras' public API is used: `compute_loss`, `compute_metrics`, `stateless_call`,
`optimizer.apply` and metrics of our own.
"""

from __future__ import annotations

import functools
import warnings
from typing import Optional, Sequence

import keras

from sideways_tf import gradients, input_checks, model_checks, serving, stream_state, train_step
from sideways_tf.core import backends, schedule, targets
from sideways_tf.core.engine import ClipResult, Engine
from sideways_tf.core.stage import build_stages
from sideways_tf.gradients import values as _values
from sideways_tf.parallel.measured import auto_plan


@keras.saving.register_keras_serializable(package="sideways_tf")
class SidewaysModel(keras.Model):
    """A frame model of D units trained on video clips with one of four rules.

    ```python
    model = sw.SidewaysModel(units, mode="skip_sideways", fusion="concat")
    model.compile(optimizer=keras.optimizers.Adam(1e-4, clipvalue=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(train_ds)  # elements (video [B, T, *F], labels [B] or [B, T, ...][, sample_weight])
    ```

    Calling the model on a clip `[B, T, *F]` returns per-frame predictions `[B, T', *O]`: `T' = T -
    (D - 1)` in the sideways modes (the pipeline's latency; frame j's prediction at index j), T in "bp".

    Args:
      units: the D units; `units[k]` maps its input to `h_k`, the last returns predictions.
      mode: `"bp"`, `"sideways"`, `"skip_sideways"` or `"fa_skip_sideways"`.
      fusion: how a unit merges its direct and shortcut inputs: `"concat"` or `"add"`.
      shortcut: tau: `"auto"`, `"maxpool"`, `"avgpool"`, `"tile"` or `"project"`.
      devices: None, one device string per unit (e.g. `["/GPU:0", "/GPU:0", "/GPU:1"]`: units on
        different devices run concurrently; TensorFlow: each unit in its `tf.device`; JAX: one
        program per device group), or `"auto"`: at build, the units are timed and grouped over
        every accelerator (else CPU device) there is (`sw.parallel.balance`) and, under JAX, kept
        on one device where a clip's gradients were not faster spread (`docs/depth_parallel.md`);
        `model.device_plan` is the `sw.parallel.Balance` (groups, unit and group ms, the measured
        speed-up).
      gradient_stats: also report each unit's pseudo-gradient mean and L2 norm per epoch (metrics
        `unit{i}_grad_mean`, `unit{i}_grad_norm`).
      update_every: None (one update per clip), or L: the optimizer is applied inside the frame loop
        every L steps, each unit with the mean of its counted steps since its last update; later
        frames see the new weights (1: the papers' per-frame update).
      stateful: consecutive batches are consecutive chunks of the same B streams; the pipeline
        (activations, messages, validity, the open window, targets in flight) carries over. Needs a
        fixed batch size; `reset_state()` restarts every stream, an input `{"video": clip, "restart":
        [B] bool}` single slots.
      check_finite: a training step fails, naming the culprit, when the input video or a unit's
        pseudo-gradient holds NaN or Inf (one reduction per gradient).
      stop_on_nonfinite_loss: a step whose loss is NaN or Inf is not applied and raises
        `FloatingPointError`, so `fit` stops with the weights of the last finite step (both
        backends, XLA too: one scalar read back per step). False lets such steps update the weights.
      masking: the papers' mask gamma: a unit's step counts only once its incoming gradient and
        the input it was computed at come from real frames. False is an ablation (Sideways paper,
        Section 3.4): every step counts, the zero-filled warm-up included (`docs/rules.md`).
      **kwargs: passed to `keras.Model` (`name`, ...).
    """

    def __init__(self, units: Sequence[keras.layers.Layer], mode: str = "sideways", fusion: str = "concat",
                 shortcut: str = "auto", devices: Optional[Sequence[str]] = None, gradient_stats: bool = False,
                 update_every: Optional[int] = None, stateful: bool = False, check_finite: bool = False,
                 stop_on_nonfinite_loss: bool = True, masking: bool = True, **kwargs):
        super().__init__(**kwargs)
        model_checks.check_arguments(units, mode, fusion, shortcut, devices, update_every, stateful,
                                     stop_on_nonfinite_loss, masking)
        self.requested_devices = devices
        if devices is not None and devices != "auto":
            devices = list(devices)
        self.frame_units = list(units)
        self.gradient_stats = gradient_stats
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.gradient_trackers = [(keras.metrics.Mean(name=f"unit{k + 1}_grad_mean"),
                                   keras.metrics.Mean(name=f"unit{k + 1}_grad_norm"))
                                  for k in range(len(units) if gradient_stats else 0)]
        self.mode = mode
        self.fusion = fusion
        self.shortcut = shortcut
        self.devices = devices
        self.device_plan = None  # with devices="auto": the sw.parallel.Balance chosen at build
        self.update_every = update_every
        self.stateful = stateful
        self.check_finite = bool(check_finite)
        self.stop_on_nonfinite_loss = stop_on_nonfinite_loss
        self.masking = masking
        self.stream_state = stream_state.StreamState(name="stream_state") if stateful else None
        self.stages = []
        self.frame_shape = None
        self.engine: Optional[Engine] = None
        # Bypasses Keras' attribute tracking: what the training step, the train function and `fit` share.
        self.__dict__["_step_checks"] = backends.StepChecks()


    @property
    def depth(self) -> int:
        """D, the number of units."""
        return len(self.frame_units)

    @property
    def min_clip_length(self) -> int:
        """The shortest training clip in which every unit counts: `2D - 1` (1 in `"bp"`)."""
        return schedule.min_clip_length(self.depth, self.mode)

    @property
    def activation_shapes(self) -> list:
        """`S_k`, the output shapes of units 1..D-1 without the batch axis (after `build`)."""
        self._require_built()
        return list(self.engine.activation_shapes)

    @property
    def prediction_shape(self) -> tuple:
        """`O`, the shape of one frame's prediction without the batch axis (after `build`)."""
        self._require_built()
        return self.engine.prediction_shape

    @property
    def inference_latency(self) -> int:
        """Frames between a clip's start and its first prediction in `call` (`schedule.rule` decides)."""
        return schedule.rule(self.mode, self.depth, training=False).latency

    def _require_built(self):
        if self.engine is None:
            raise ValueError("the model is not built yet: call `build((None, None, *frame_shape))` or use it first.")

    def build(self, input_shape):
        """Builds every unit on its (fused) input from a clip shape `[B, T, *F]`."""
        frame_shape = model_checks.frame_shape_of(self, input_shape)
        if self.engine is not None:
            return
        # With devices named, each unit's variables are made where it runs (on per-device programs).
        place = None
        if backends.current().per_device_programs(self.devices, self.mode):
            place = backends.current().placement(self.devices, programs=True)
        with model_checks.read_as_clips(input_shape):
            stages, activation_shapes, prediction_shape = build_stages(
                self.frame_units, frame_shape, self.mode, self.fusion, self.shortcut,
                scope=None if place is None else place.creating,
            )
        model_checks.check_stages(stages)
        if self.devices == "auto":  # timed on this batch size (8 when the shape leaves it open)
            self.device_plan = auto_plan(stages, activation_shapes, prediction_shape, frame_shape, self.mode,
                                         tuple(input_shape)[0] or 8, self.masking)
            self.devices = self.device_plan.devices if self.device_plan and self.device_plan.pays else None
        self.frame_shape = frame_shape
        self.stages = stages
        self.engine = Engine(stages, self.mode, activation_shapes, prediction_shape, self.devices,
                             programs=backends.current().per_device_programs(self.devices, self.mode), place=place,
                             masking=self.masking)
        self.built = True


    def call(self, video, training=False):
        video, _ = stream_state.video_and_restarts(video)
        model_checks.check_video(self, video, training=False)
        return self.engine.predict_clip(video)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape[stream_state.VIDEO_KEY]
        if self.engine is None:
            self.build(input_shape)
        num_frames = input_shape[1]
        if num_frames is not None:
            num_frames = max(num_frames - self.inference_latency, 0)
        return (input_shape[0], num_frames) + self.engine.prediction_shape


    def compute_frame_loss(self, y, y_pred, sample_weight=None, training=True):
        """The loss of one frame's predictions `[B, *O]`: Keras' `compute_loss` (compiled loss + regularizers)."""
        if self.engine.programs and self.losses:  # the regularizers' parts live on several devices
            regularizers = gradients.penalty(self, _values(self.trainable_variables))[0]
            return gradients.data_loss(self, y, y_pred, sample_weight) + regularizers
        return super().compute_loss(x=None, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The loss of clip predictions `[B, T', *O]` (what `call` returns) against the clip's labels.

        Clip labels `[B, ...]` score the mean prediction over the valid frames; frame labels
        `[B, T, ...]` score every valid frame.
        """
        y, y_pred, sample_weight = self._clip_scored(y, y_pred, sample_weight)
        return self.compute_frame_loss(y, y_pred, sample_weight, training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates the compiled metrics on clip predictions `[B, T', *O]`, scored as in `compute_loss`."""
        y, y_pred, sample_weight = self._clip_scored(y, y_pred, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def _clip_scored(self, y, y_pred, sample_weight):
        valid_frames = y_pred.shape[1]
        num_frames = None if valid_frames is None else valid_frames + self.inference_latency
        per_frame, weights_per_frame = self.engine.label_layout(y, sample_weight, num_frames)
        return targets.clip_predictions(y_pred, y, sample_weight, per_frame, weights_per_frame)

    @property
    def metrics(self):
        # Our own loss tracker replaces Keras' (which the training rule cannot feed).
        keras_metrics = [m for m in super().metrics if m is not self.loss_tracker and m.name != "loss"]
        return [self.loss_tracker] + keras_metrics


    def clip_gradients(self, params, states, video, labels, sample_weight=None, exact: bool = False,
                       **streaming) -> ClipResult:
        """The pure function behind training: `gradients.clip_gradients` (its arguments and result)."""
        return gradients.clip_gradients(self, params, states, video, labels, sample_weight, exact, **streaming)

    def pseudo_gradients(self, video, labels, sample_weight=None) -> list:
        """The gradients `train_step` would hand to the optimizer for this batch (before clipping).

        Nothing is applied and no state (batch-norm statistics, metrics) changes.

        Args:
          video: `[B, T, *F]`.
          labels: `[B, ...]` per clip or `[B, T, ...]` per frame.
          sample_weight: None, `[B]` or `[B, T]`.

        Returns:
          A list aligned with `self.trainable_variables`.
        """
        return gradients.of_batch(self, video, labels, sample_weight, exact=False)

    def exact_gradients(self, video, labels, sample_weight=None) -> list:
        """The exact gradient the rule approximates; nothing is applied.

        `"bp"` and `"sideways"`: exact per-frame backprop, averaged over the T frames. The skip
        modes: exact backprop through time of the network their pipeline computes, whose
        shortcuts read a later frame than the direct path (`core.through_time`; `stop_gradient`
        at each shortcut's input in `"fa_skip_sideways"`); its memory grows with T. On a constant
        clip this equals `pseudo_gradients`. Arguments and result as in `pseudo_gradients`.
        """
        return gradients.of_batch(self, video, labels, sample_weight, exact=True)

    def gradient_function(self, exact: bool = False):
        """The compiled pure function behind `pseudo_gradients` (`exact_gradients` with `exact=True`):
        `function(params, states, video, labels, sample_weight) -> gradients` (`gradients.gradient_function`)."""
        return gradients.gradient_function(self, exact)


    def fit(self, x=None, y=None, *args, **kwargs):
        """Keras' `fit`, the clips' shape checked where known before the first step (`train_step.fit`: under
        JAX an error inside the first compiled step would leave the variables empty); a `fit` on no batch
        at all raises a `ValueError`."""
        return train_step.fit(self, super().fit, self._step_checks, x, y, args, kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Keras' `evaluate`, after checking the clips' shape (and labels) where known, before Keras wraps errors."""
        x = model_checks.check_inference_input(self, x, kwargs, y, labelled=True)
        with backends.trainer().keras_run(self, self._step_checks), input_checks.first_line_ours():
            return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """Keras' `predict`, after checking the clips' shape where known (our error, not Keras' wrapper)."""
        x = model_checks.check_inference_input(self, x, kwargs)
        with backends.trainer().keras_run(self, self._step_checks), input_checks.first_line_ours():
            return super().predict(x, *args, **kwargs)

    def save(self, filepath, *args, **kwargs):
        """Keras' `save` to the native `.keras` format; the legacy HDF5 format (`.h5`) is refused, naming both."""
        model_checks.check_save_path(filepath)
        return super().save(filepath, *args, **kwargs)

    def train_on_batch(self, x, y=None, sample_weight=None, *args, **kwargs):
        """Keras' `train_on_batch`; with `stateful=True` the stream state is created from the first batch."""
        video, _ = stream_state.video_and_restarts(x)
        model_checks.check_video(self, video, training=True)
        model_checks.check_targets(self, video.shape[1], y, sample_weight)
        train_step.prepare(self, tuple(video.shape), y, sample_weight is not None)
        return super().train_on_batch(x, y, sample_weight, *args, **kwargs)

    def reset_state(self) -> None:
        """Every stream restarts at the next batch (`stateful=True`): zero pipeline, empty window."""
        if self.stateful and self.stream_state.created:
            self.stream_state.reset()

    def train_step(self, *args):
        """One batch: the rule's pseudo-gradients, the optimizer's update, the metrics (TensorFlow:
        `train_step(data)`; JAX: `train_step(state, data) -> (logs, state)`, `backends.trainer()`)."""
        return train_step.keras_step(self, "train", self._train_batch, args)

    def _train_batch(self, *args):
        if self.engine is None:  # a generator's first batch: built first, so that its state can be held
            x = keras.utils.unpack_x_y_sample_weight(args[-1])[0]
            model_checks.check_video(self, stream_state.video_and_restarts(x)[0], training=True)
        step = functools.partial(train_step.keras_train_batch, self, self._step_checks)
        return backends.trainer().keras_train_step(self, step, args, self._step_checks)

    def _stepped_by_python(self) -> None:
        """On per-device programs the step drives one compiled program per device itself: Keras'
        step functions are not compiled as a whole."""
        if self.engine is not None and self.engine.programs:
            self.jit_compile = False

    def make_train_function(self, force=False):
        """Keras' train function; with run-time checks, one that raises when a step's check failed."""
        self._stepped_by_python()
        train_step.keras_function(self, "train", super().make_train_function, self._train_batch, force)
        self.train_function = backends.trainer().keras_train_function(self, self.train_function, self._step_checks,
                                                                      input_checks.NONFINITE_LOSS)
        return self.train_function

    def make_test_function(self, force=False):
        """Keras' test function (not compiled as a whole when the units run one program per device)."""
        self._stepped_by_python()
        return train_step.keras_function(self, "test", super().make_test_function, self._test_batch, force)

    def make_predict_function(self, force=False):
        """Keras' predict function (not compiled as a whole when the units run one program per device)."""
        self._stepped_by_python()
        return train_step.keras_function(self, "predict", super().make_predict_function, super().predict_step, force)

    def test_step(self, *args):
        """Depth-parallel inference on one batch (per-frame in `"bp"`), then the loss and metrics."""
        return train_step.keras_step(self, "test", self._test_batch, args)

    def _test_batch(self, *args):
        return backends.trainer().keras_test_step(self, functools.partial(train_step.keras_test_batch, self), args)

    def predict_step(self, *args):
        """Keras' predict step (compiled by the backend where it compiles the steps itself)."""
        return train_step.keras_step(self, "predict", super().predict_step, args)

    def summary(self, *args, **kwargs):
        """Keras' summary after a header with the rule; one row per unit (its stage: the unit and its tau)."""
        if self.stages:  # the units are also tracked on their own; listing the stages shows each once
            kwargs.setdefault("layer_range", [self.stages[0].name, self.stages[-1].name])
        for line in model_checks.summary_header(self):
            (kwargs.get("print_fn") or print)(line)
        return super().summary(*args, **kwargs)


    def init_states(self, batch_size) -> dict:
        """The state of `stream_step` before the first frame of B streams (MoViNet's `init_states`, the
        SavedModel's endpoint of the same name): `{"steps": [B] int32 (frames seen), "h0".."h{D-2}": [B, *S_k]
        (activations in flight)}`."""
        self._require_built()
        return self.engine.init_states(batch_size)

    def init_state(self, batch_size) -> dict:
        """Deprecated alias of `init_states` (removed in the next release)."""
        warnings.warn("SidewaysModel.init_state is deprecated: use init_states (the same state; the name of "
                      "the SavedModel's endpoint).", DeprecationWarning, stacklevel=2)
        return self.init_states(batch_size)

    def stream_step(self, frame, state: dict):
        """Depth-parallel inference on one frame of B streams: `(frame, state) -> (prediction, state)`.

        Args:
          frame: `[B, *F]`, the next frame of every stream.
          state: from `init_states(B)` or the previous `stream_step`.

        Returns:
          `(prediction [B, *O], state)`. The prediction is for the frame that entered D - 1
          steps earlier (this frame's in `"bp"`), valid once `state["steps"] >= D - 1` before
          the step; frame by frame the valid ones equal `predict` on the whole clip.
        """
        self._require_built()
        return serving.stream_step(self, frame, state)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """A SavedModel (TensorFlow backend) that plain `tf.saved_model.load` serves: `serve(video [B, T, *F])
        -> [B, T', *O]`, `init_states(batch_size) -> state` and `stream_step(frame [B, *F], state) ->
        {"prediction": [B, *O], **new_state}` (`sideways_tf.serving`). Another format or an
        `input_signature` goes to Keras' `Model.export`."""
        if format != "tf_saved_model" or input_signature is not None:
            return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)
        return serving.export_saved_model(self, filepath, verbose=verbose)


    def load_weights(self, filepath, *args, **kwargs):
        """Keras' `load_weights`; an unreadable file raises `OSError` naming it (a backup's restore then falls
        back to its previous copy), weights another model wrote a one-line `ValueError`."""
        with model_checks.weights_file(self, filepath):
            return super().load_weights(filepath, *args, **kwargs)

    def get_config(self):
        options = ("mode", "fusion", "shortcut", "gradient_stats", "update_every", "stateful", "check_finite",
                   "stop_on_nonfinite_loss", "masking", "name")
        return {"units": [keras.saving.serialize_keras_object(u) for u in self.frame_units],
                "devices": self.requested_devices, **{name: getattr(self, name) for name in options}}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["units"] = [keras.saving.deserialize_keras_object(u, custom_objects) for u in config["units"]]
        return cls(**config)
