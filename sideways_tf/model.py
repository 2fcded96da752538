"""`SidewaysModel`: a chain of Keras units trained with BP, Sideways or Skip-Sideways.

The Keras front end only: argument checks, building, and the train/test steps around the pure
functions of `sideways_tf.core.engine`. The same code runs under `KERAS_BACKEND=tensorflow`
(stateful steps) and `KERAS_BACKEND=jax` (Keras' stateless `train_step(state, data)` contract:
the stateful step runs inside a `keras.StatelessScope` and the new state is read back from it).
Only Keras' public API is used: `compute_loss`, `compute_metrics`, `stateless_call`,
`optimizer.apply` and metrics of our own.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import keras
from keras import ops

from sideways_tf import gradients, input_checks, model_checks, stream_state, train_step
from sideways_tf.core import backends, schedule, targets
from sideways_tf.core.engine import ClipResult, Engine
from sideways_tf.core.stage import build_stages
from sideways_tf.parallel.balance import auto_devices
from sideways_tf.train_step import values as _values


def _as_tensor(x):
    return None if x is None else ops.convert_to_tensor(x)


@keras.saving.register_keras_serializable(package="sideways_tf")
class SidewaysModel(keras.Model):
    """A frame model of D units trained on video clips with one of four rules.

    Example:

    ```python
    model = sw.SidewaysModel(units, mode="skip_sideways", fusion="concat")
    model.compile(optimizer=keras.optimizers.Adam(1e-4, clipvalue=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_ds)  # elements (video [B, T, *F], labels [B] or [B, T, ...][, sample_weight])
    ```

    Args:
      units: the D units, `units[k]` maps its input to `h_k`; the last returns predictions.
      mode: `"bp"`, `"sideways"`, `"skip_sideways"` or `"fa_skip_sideways"`.
      fusion: how a unit merges its direct and shortcut inputs: `"concat"` or `"add"`.
      shortcut: tau, `"auto"`, `"maxpool"`, `"avgpool"`, `"tile"` or `"project"`.
      devices: None, or one device string per unit (e.g. `["/GPU:0", "/GPU:0", "/GPU:1"]`): the
        units on different devices run concurrently at each step. Under TensorFlow each unit
        runs in its `tf.device`; under JAX the frame loop is one program over the distinct
        devices, each running its own units (`sw.parallel.balance` chooses the groups).
        `"auto"`: at build, the units are timed and grouped over every accelerator there is
        (else every CPU device), and `devices` becomes that list (None with one device).
      gradient_stats: also report, per unit, the mean and the L2 norm of its pseudo-gradient
        (metrics `unit{i}_grad_mean` and `unit{i}_grad_norm`, averaged over the epoch).
      update_every: None (one update per clip), or L: the optimizer is applied inside the
        frame loop every L steps, each unit with the mean of its counted steps since its
        last update; later frames see the new weights. `update_every=1` is the papers'
        per-frame update.
      stateful: consecutive batches are consecutive chunks of the same B streams: the
        pipeline (activations, messages, validity, the open update window and the targets in
        flight) carries over instead of restarting. Needs a fixed batch size; `reset_state()`
        restarts every stream, and an input `{"video": clip, "restart": [B] bool}` restarts
        single slots.
      check_finite: every training step fails, naming the culprit, when the input video or a
        unit's pseudo-gradient holds NaN or Inf (TensorFlow: an `InvalidArgumentError`; JAX: a
        runtime error carrying a `FloatingPointError`). Costs one reduction per gradient.
      stop_on_nonfinite_loss: a training step whose loss is NaN or Inf (a learning rate too
        high, a NaN in the input) is not applied and raises `FloatingPointError` saying so, so
        `fit` stops with the weights of the last step with a finite loss (on both backends, with
        XLA too: the step's state is held on the device and one scalar is read back per step).
        False lets such steps update the weights.
      **kwargs: passed to `keras.Model` (`name`, ...).

    Calling the model on a clip `[B, T, *F]` returns the per-frame predictions
    `[B, T', *O]`, where `T' = T - (D - 1)` in the sideways modes (the pipeline's latency; the
    prediction for frame j is at index j) and `T' = T` in `"bp"`.
    """

    def __init__(
        self,
        units: Sequence[keras.layers.Layer],
        mode: str = "sideways",
        fusion: str = "concat",
        shortcut: str = "auto",
        devices: Optional[Sequence[str]] = None,
        gradient_stats: bool = False,
        update_every: Optional[int] = None,
        stateful: bool = False,
        check_finite: bool = False,
        stop_on_nonfinite_loss: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        model_checks.check_arguments(units, mode, fusion, shortcut, devices, update_every, stateful,
                                     stop_on_nonfinite_loss)
        self.requested_devices = devices
        if devices is not None and devices != "auto":
            devices = list(devices)
        self.frame_units = list(units)
        self.gradient_stats = gradient_stats
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.gradient_trackers = []
        if gradient_stats:
            self.gradient_trackers = [
                (keras.metrics.Mean(name=f"unit{k + 1}_grad_mean"), keras.metrics.Mean(name=f"unit{k + 1}_grad_norm"))
                for k in range(len(units))
            ]
        self.mode = mode
        self.fusion = fusion
        self.shortcut = shortcut
        self.devices = devices
        self.update_every = update_every
        self.stateful = stateful
        self.check_finite = bool(check_finite)
        self.stop_on_nonfinite_loss = stop_on_nonfinite_loss
        self.stream_state = stream_state.StreamState(name="stream_state") if stateful else None
        self.stages = []
        self.frame_shape = None
        self.engine: Optional[Engine] = None
        # Bypasses Keras' attribute tracking: what the training step, the train function and `fit` share.
        self.__dict__["_step_checks"] = backends.StepChecks()

    # ------------------------------------------------------------------ building

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
            self.devices = auto_devices(stages, activation_shapes, frame_shape, self.mode, tuple(input_shape)[0] or 8)
        self.frame_shape = frame_shape
        self.stages = stages
        self.engine = Engine(stages, self.mode, activation_shapes, prediction_shape, self.devices,
                             programs=backends.current().per_device_programs(self.devices, self.mode), place=place)
        self.built = True

    def _on_programs(self) -> bool:
        return self.engine is not None and self.engine.programs

    # ------------------------------------------------------------------ forward

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

    # ------------------------------------------------------------------ losses and metrics

    def compute_frame_loss(self, y, y_pred, sample_weight=None, training=True):
        """The loss of one frame's predictions `[B, *O]`: Keras' `compute_loss` (compiled loss + regularizers)."""
        if self._on_programs() and self.losses:  # the regularizers' parts live on several devices
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

    # ------------------------------------------------------------------ gradients

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
        return self._gradients(video, labels, sample_weight, exact=False)

    def exact_gradients(self, video, labels, sample_weight=None) -> list:
        """Exact per-frame backprop of the same network, averaged over the T frames.

        In the skip modes the network includes its shortcuts (with `stop_gradient` on them in
        `"fa_skip_sideways"`), read from the same frame. On a constant clip this equals
        `pseudo_gradients`; elsewhere it is the reference pseudo-gradients approximate.
        Arguments and result as in `pseudo_gradients`; nothing is applied.
        """
        return self._gradients(video, labels, sample_weight, exact=True)

    def _gradients(self, video, labels, sample_weight, exact: bool) -> list:
        video, labels, sample_weight = _as_tensor(video), _as_tensor(labels), _as_tensor(sample_weight)
        model_checks.check_video(self, video, training=True)
        model_checks.check_compiled(self)
        function = self.gradient_function(exact)
        return list(function(_values(self.trainable_variables), _values(self.non_trainable_variables),
                             video, labels, sample_weight))

    def gradient_function(self, exact: bool = False):
        """The compiled pure function behind `pseudo_gradients` (`exact_gradients` with `exact=True`):
        `function(params, states, video, labels, sample_weight) -> gradients` (`gradients.gradient_function`)."""
        return gradients.gradient_function(self, exact)

    # ------------------------------------------------------------------ Keras steps

    def fit(self, x=None, y=None, *args, **kwargs):
        """Keras' `fit`, after checking the clips' shape where it is known before the first step.

        (Under JAX, an error raised inside the first compiled step leaves Keras' variables
        without values; checking arrays and `tf.data` element specs first avoids that.) With
        `stateful=True` the stream state is created here, from the batches' shapes. A `fit` that
        trains on no batch at all (an empty dataset) raises a `ValueError` after it.
        """
        kwargs = model_checks.fit_arguments(args, kwargs)
        found = model_checks.check_fit_batches(self, x, y, kwargs)
        if found is not None:  # the batches' shape, labels, whether they carry weights
            train_step.prepare(self, *found)
        counter = input_checks.BatchCounter()
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), counter]
        epochs, initial_epoch = kwargs.get("epochs", 1), kwargs.get("initial_epoch", 0)
        if getattr(x, "element_spec", None) is not None and hasattr(x, "cardinality") and int(x.cardinality()) == 0:
            input_checks.check_trained(counter, epochs, initial_epoch)  # known empty: say so before Keras starts
        x = model_checks.checked_lengths(self, x, training=True)
        try:
            with backends.trainer().keras_run(self, self._step_checks), input_checks.first_line_ours():
                history = super().fit(x, y, **kwargs)
        except StopIteration:  # Keras' JAX trainer peeks at a first batch that is not there
            input_checks.check_trained(counter, epochs, initial_epoch)
            raise
        input_checks.check_trained(counter, epochs, initial_epoch)
        return history

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
        """One clip per batch: the rule's pseudo-gradients, one optimizer update, the metrics.

        TensorFlow calls `train_step(data)`; JAX calls `train_step(state, data)` and gets
        `(logs, state)` back (`backends.keras_train_step`).
        """
        if self.engine is None:  # a generator's first batch: built first, so that its state can be held
            x = keras.utils.unpack_x_y_sample_weight(args[-1])[0]
            model_checks.check_video(self, stream_state.video_and_restarts(x)[0], training=True)
        return backends.trainer().keras_train_step(self, self._train_on_batch, args, self._step_checks)

    def _stepped_by_python(self) -> None:
        """On per-device programs the step drives one compiled program per device itself: Keras'
        step functions are not compiled as a whole."""
        if self.engine is not None and self.engine.programs:
            self.jit_compile = False

    def make_train_function(self, force=False):
        """Keras' train function; with run-time checks, one that raises when a step's check failed."""
        self._stepped_by_python()
        super().make_train_function(force)
        self.train_function = backends.trainer().keras_train_function(self, self.train_function, self._step_checks,
                                                                      input_checks.NONFINITE_LOSS)
        return self.train_function

    def make_test_function(self, force=False):
        """Keras' test function (not compiled as a whole when the units run one program per device)."""
        self._stepped_by_python()
        return super().make_test_function(force)

    def make_predict_function(self, force=False):
        """Keras' predict function (not compiled as a whole when the units run one program per device)."""
        self._stepped_by_python()
        return super().make_predict_function(force)

    def test_step(self, *args):
        """Depth-parallel inference on one batch (per-frame in `"bp"`), then the loss and metrics."""
        return backends.trainer().keras_test_step(self, self._test_on_batch, args)

    def _train_on_batch(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        video, starts = stream_state.video_and_restarts(x)
        y, sample_weight = _as_tensor(y), _as_tensor(sample_weight)
        model_checks.check_video(self, video, training=True)
        model_checks.check_compiled(self)
        model_checks.check_targets(self, video.shape[1], y, sample_weight)
        return train_step.train_batch(self, video, starts, y, sample_weight, self._step_checks.held_losses)

    def _test_on_batch(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, sample_weight = _as_tensor(x), _as_tensor(y), _as_tensor(sample_weight)
        model_checks.check_targets(self, x.shape[1] if len(getattr(x, "shape", ())) > 1 else None, y, sample_weight)
        y_pred = self(x, training=False)
        train_step.track_loss(self, self.compute_loss(x, y, y_pred, sample_weight, training=False), x)
        logs = self.compute_metrics(x, y, y_pred, sample_weight)
        training_only = {tracker.name for pair in self.gradient_trackers for tracker in pair}
        return {name: value for name, value in logs.items() if name not in training_only}

    def summary(self, *args, **kwargs):
        """Keras' summary with one row per unit (its stage: the unit and, in the skip modes, its tau).

        A header line gives the rule: mode, fusion, D, and the streaming options.
        """
        print_fn = kwargs.get("print_fn") or print
        options = [f"mode={self.mode!r}", f"D={self.depth} units"]
        if self.mode in schedule.SKIP_MODES:
            options += [f"fusion={self.fusion!r}", f"shortcut={self.shortcut!r}"]
        if self.update_every is not None:
            options.append(f"update_every={self.update_every}")
        if self.stateful:
            options.append("stateful")
        print_fn(f"SidewaysModel {self.name!r}: " + ", ".join(options) + ".")
        if self.stages:
            units = ", ".join(f"{stage.name} = {stage.unit.name}" for stage in self.stages)
            print_fn(f"Units: {units}.")
            # The units are also tracked on their own; listing the stages shows each once.
            kwargs.setdefault("layer_range", [self.stages[0].name, self.stages[-1].name])
        return super().summary(*args, **kwargs)

    # ------------------------------------------------------------------ streaming inference

    def init_states(self, batch_size) -> dict:
        """The state of `stream_step` before the first frame of B streams (MoViNet's `init_states`, as the
        SavedModel's endpoint of the same name).

        Returns:
          `{"steps": [B] int32 (frames seen), "h0".."h{D-2}": [B, *S_k] (activations in flight)}`.
        """
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
        from sideways_tf import serving

        return serving.stream_step(self, frame, state)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """Writes a SavedModel with endpoints for clips and for streaming (TensorFlow backend).

        With the default format and no `input_signature`, the SavedModel has three endpoints,
        usable with plain `tf.saved_model.load` (no `sideways_tf` needed):
        `serve(video [B, T, *F]) -> [B, T', *O]`, `init_states(batch_size) -> state` and
        `stream_step(frame [B, *F], state) -> {"prediction": [B, *O], **new_state}` (see
        `stream_step` and `sideways_tf.serving`).
        Anything else goes to Keras' `Model.export`.
        """
        if format != "tf_saved_model" or input_signature is not None:
            return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)
        from sideways_tf import serving

        return serving.export_saved_model(self, filepath, verbose=verbose)

    # ------------------------------------------------------------------ serialization

    def load_weights(self, filepath, *args, **kwargs):
        """Keras' `load_weights`; a file that is not readable, or that another model wrote, is named in one line.

        An unreadable file raises `OSError` (as Keras does; a backup's restore then falls back to
        its previous copy), weights of another model `ValueError`.
        """
        with model_checks.weights_file(self, filepath):
            return super().load_weights(filepath, *args, **kwargs)

    def get_config(self):
        options = ("mode", "fusion", "shortcut", "gradient_stats", "update_every", "stateful", "check_finite",
                   "stop_on_nonfinite_loss", "name")
        return {"units": [keras.saving.serialize_keras_object(u) for u in self.frame_units],
                "devices": self.requested_devices, **{name: getattr(self, name) for name in options}}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["units"] = [keras.saving.deserialize_keras_object(u, custom_objects) for u in config["units"]]
        return cls(**config)
