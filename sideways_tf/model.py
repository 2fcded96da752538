"""`SidewaysModel`: a chain of Keras units trained with BP, Sideways or Skip-Sideways.

See DESIGN.md (sections 2 to 5) for the contract this implements; the per-step mechanics live
in `sideways_tf.core`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from sideways_tf.core import episode, schedule, targets
from sideways_tf.core.shortcut import FUSIONS, SHORTCUTS, make_shortcut
from sideways_tf.core.stage import Stage


def _num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def _check_choice(name: str, value, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}.")


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
      devices: None, or one device string per unit (e.g. `["/CPU:0", "/CPU:1"]`).
      gradient_stats: also report, per unit, the mean and the L2 norm of its pseudo-gradient
        (metrics `unit{i}_grad_mean` and `unit{i}_grad_norm`, averaged over the epoch).
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_choice("mode", mode, schedule.MODES)
        _check_choice("fusion", fusion, FUSIONS)
        _check_choice("shortcut", shortcut, SHORTCUTS)
        if isinstance(units, keras.layers.Layer) or not isinstance(units, (list, tuple)):
            raise ValueError(f"`units` must be a non-empty list of keras.layers.Layer; got {type(units).__name__}.")
        if not units:
            raise ValueError("`units` must be a non-empty list of keras.layers.Layer; got an empty list.")
        for k, unit in enumerate(units):
            if not isinstance(unit, keras.layers.Layer):
                raise ValueError(f"`units[{k}]` must be a keras.layers.Layer; got {type(unit).__name__}.")
        if devices is not None:
            if isinstance(devices, str) or len(devices) != len(units) or not all(isinstance(d, str) for d in devices):
                raise ValueError(
                    f"`devices` must be None or a list of {len(units)} device strings (one per unit); got {devices!r}."
                )
            devices = list(devices)
        self.frame_units = list(units)
        self.gradient_stats = gradient_stats
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
        self.stages = []
        self.frame_shape = None
        self._activation_shapes = None
        self._output_shape = None

    # ------------------------------------------------------------------ building

    @property
    def depth(self) -> int:
        """D, the number of units."""
        return len(self.frame_units)

    @property
    def min_clip_length(self) -> int:
        """The shortest training clip in which every unit counts: `2D - 1` (1 in `"bp"`)."""
        return schedule.min_clip_length(self.depth, self.mode)

    def build(self, input_shape):
        """Builds every unit on its (fused) input from a clip shape `[B, T, *F]`."""
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError(f"videos must be [B, T, *frame_shape] (rank >= 3); got shape {input_shape}.")
        frame_shape = tuple(input_shape[2:])
        if any(d is None for d in frame_shape):
            raise ValueError(f"the frame shape must be fully defined; got video shape {input_shape}.")
        if self.stages:
            if frame_shape != self.frame_shape:
                raise ValueError(
                    f"video shape {input_shape} does not match the shape the model was built on "
                    f"{(None, None) + self.frame_shape} ([B, T, *frame_shape])."
                )
            return
        self.frame_shape = frame_shape
        skip = self.mode in schedule.SKIP_MODES
        hidden = []
        stages = []
        for k, unit in enumerate(self.frame_units):
            direct = keras.KerasTensor((None,) + frame_shape) if k == 0 else hidden[k - 1]
            has_shortcut = skip and k >= 2
            transform = None
            if has_shortcut:
                transform = make_shortcut(
                    hidden[k - 2].shape[1:], direct.shape[1:], self.fusion, self.shortcut, name=f"tau_{k}"
                )
            stage = Stage(unit, self.fusion, has_shortcut, transform, name=f"stage_{k}")
            out = stage(direct, hidden[k - 2] if has_shortcut else None)
            if any(d is None for d in out.shape[1:]):
                raise ValueError(f"units[{k}] must produce a fully defined shape; got {out.shape}.")
            hidden.append(out)
            stages.append(stage)
        self.stages = stages
        self._activation_shapes = [tuple(h.shape[1:]) for h in hidden[:-1]]
        self._output_shape = tuple(hidden[-1].shape)
        self.built = True

    def _check_video(self, video, training: bool) -> None:
        shape = tuple(video.shape)
        if not self.built:
            self.build(shape)
        expected = (None, None) + tuple(self.frame_shape)
        if len(shape) != len(expected) or tuple(shape[2:]) != tuple(self.frame_shape):
            raise ValueError(
                f"video shape {shape} does not match the shape the model was built on {expected} "
                "([B, T, *frame_shape])."
            )
        minimum = self.min_clip_length if training else schedule.output_latency(self.depth, self.mode) + 1
        num_frames = shape[1]
        if num_frames is not None and num_frames < minimum:
            what = "every unit to count once (2D - 1)" if training else "one prediction (D)"
            raise ValueError(
                f"clip too short: T={num_frames} frames, but a {self.depth}-unit model in mode "
                f"{self.mode!r} needs at least {minimum} frames for {what}."
            )

    # ------------------------------------------------------------------ forward

    def call(self, video, training=False):
        self._check_video(video, training=False)
        return episode.inference_episode(self.stages, self.mode, video, self._activation_shapes, self.devices)

    def compute_output_shape(self, input_shape):
        if not self.built:
            self.build(input_shape)
        num_frames = input_shape[1]
        if num_frames is not None:
            num_frames -= schedule.output_latency(self.depth, self.mode)
        return (input_shape[0], num_frames) + self._output_shape[1:]

    # ------------------------------------------------------------------ gradients

    def _episode(self, video, labels, sample_weight, reference=None):
        """Runs the training rule on one clip; returns the episode and the label layout."""
        self._check_video(video, training=True)
        if self._compile_loss is None:
            raise ValueError("call `compile(loss=...)` before training or asking for gradients.")
        num_frames = video.shape[1]
        labels_per_frame = targets.is_per_frame(labels.shape, self._output_shape, num_frames, labels.dtype.is_integer)
        weights_per_frame = sample_weight is not None and len(sample_weight.shape) == 2 and labels_per_frame
        latency = schedule.output_latency(self.depth, "bp" if reference else self.mode)

        def head_for_step(step):
            index = tf.maximum(step - latency, 0)
            y = targets.at_frame(labels, index, labels_per_frame)
            w = targets.at_frame(sample_weight, index, weights_per_frame)
            return lambda out: self._compute_loss(x=None, y=y, y_pred=out, sample_weight=w, training=True)

        result = episode.train_episode(
            self.stages, self.mode, video, head_for_step, self._activation_shapes, self.devices, reference
        )
        return result, labels_per_frame, weights_per_frame

    def _ordered(self, per_stage_grads, synchronous: bool) -> list:
        """Per-stage gradients -> a list aligned with `self.trainable_variables`.

        Weight regularizers are part of `compute_loss`, so the top unit's per-step loss already
        carries their gradient for every variable its tape watches: all of them in exact
        backprop, only the top unit's in the sideways rules. The others get it here, once.
        """
        by_id = {}
        for stage, grads in zip(self.stages, per_stage_grads):
            for variable, grad in zip(stage.trainable_variables, grads):
                key = id(variable)
                by_id[key] = grad if key not in by_id else by_id[key] + grad
        ordered = [by_id.get(id(v), tf.zeros_like(v.value)) for v in self.trainable_variables]
        if self.losses and not synchronous:
            top = {id(v) for v in self.stages[-1].trainable_variables}
            rest = [(i, v) for i, v in enumerate(self.trainable_variables) if id(v) not in top]
            with tf.GradientTape() as tape:
                penalty = tf.add_n([tf.cast(tf.reduce_sum(r), tf.float32) for r in self.losses]) / _num_replicas()
            extra = tape.gradient(penalty, [v.value for _, v in rest], unconnected_gradients="zero")
            for (i, _), e in zip(rest, extra):
                ordered[i] = ordered[i] + tf.cast(e, ordered[i].dtype)
        return ordered

    def _synchronous(self, reference) -> bool:
        return self.mode == "bp" or reference == "exact"

    def _without_state_changes(self, fn):
        """Runs `fn()` and restores every non-trainable variable afterwards."""
        variables = self.non_trainable_variables
        saved = [tf.identity(v.value) for v in variables]
        result = fn()
        with tf.control_dependencies(tf.nest.flatten(result)):
            for v, old in zip(variables, saved):
                v.assign(old)
        return tf.nest.map_structure(tf.identity, result)

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
        return self._gradients(video, labels, sample_weight, reference=None)

    def exact_gradients(self, video, labels, sample_weight=None) -> list:
        """Exact per-frame backprop of the same network, averaged over the T frames.

        In the skip modes the network includes its shortcuts (with `stop_gradient` on them in
        `"fa_skip_sideways"`), read from the same frame. On a constant clip this equals
        `pseudo_gradients`; elsewhere it is the reference pseudo-gradients approximate.
        Arguments and result as in `pseudo_gradients`; nothing is applied.
        """
        return self._gradients(video, labels, sample_weight, reference="exact")

    def _gradients(self, video, labels, sample_weight, reference):
        video = tf.convert_to_tensor(video)
        labels = tf.convert_to_tensor(labels)
        sample_weight = None if sample_weight is None else tf.convert_to_tensor(sample_weight)
        self._check_video(video, training=True)
        fn = self._gradient_fn(reference)
        return fn(video, labels) if sample_weight is None else fn(video, labels, sample_weight)

    def _gradient_fn(self, reference):
        cache = self.__dict__.setdefault("_gradient_fns", {})
        if reference not in cache:

            @tf.function(reduce_retracing=True)
            def compute(video, labels, sample_weight=None):
                def run():
                    result, _, _ = self._episode(video, labels, sample_weight, reference)
                    return self._ordered(result.gradients, self._synchronous(reference))

                return self._without_state_changes(run)

            cache[reference] = compute
        return cache[reference]

    # ------------------------------------------------------------------ Keras steps

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        result, labels_per_frame, weights_per_frame = self._episode(x, y, sample_weight)
        gradients = self._ordered(result.gradients, self._synchronous(None))
        self.optimizer.apply(gradients, self.trainable_variables)
        for (mean_tracker, norm_tracker), unit_grads in zip(self.gradient_trackers, result.gradients):
            if unit_grads:
                flat = tf.concat([tf.reshape(g, [-1]) for g in unit_grads], 0)
                mean_tracker.update_state(tf.reduce_mean(flat))
                norm_tracker.update_state(tf.norm(flat))
        if self._loss_tracker is not None:
            self._loss_tracker.update_state(result.loss * _num_replicas(), sample_weight=tf.shape(x)[0])
        y_flat, pred_flat, w_flat = targets.flatten_steps(
            result.top_outputs, y, sample_weight, labels_per_frame, weights_per_frame
        )
        return self.compute_metrics(x, y_flat, pred_flat, sample_weight=w_flat)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        outputs = self(x, training=False)
        labels_per_frame = targets.is_per_frame(y.shape, self._output_shape, x.shape[1], y.dtype.is_integer)
        if labels_per_frame:
            weights_per_frame = sample_weight is not None and len(sample_weight.shape) == 2
            y, outputs, sample_weight = targets.flatten_steps(
                outputs, y, sample_weight, True, weights_per_frame
            )
        else:
            outputs = tf.reduce_mean(outputs, axis=1)
        loss = self._compute_loss(x=None, y=y, y_pred=outputs, sample_weight=sample_weight, training=False)
        if self._loss_tracker is not None:
            self._loss_tracker.update_state(loss * _num_replicas(), sample_weight=tf.shape(x)[0])
        logs = self.compute_metrics(x, y, outputs, sample_weight=sample_weight)
        training_only = {tracker.name for pair in self.gradient_trackers for tracker in pair}
        return {name: value for name, value in logs.items() if name not in training_only}

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    def _symbolic_build(self, iterator=None, data_batch=None):
        """Builds model, compiled loss and metrics, and optimizer before a distributed `fit`.

        Keras (under a tf.distribute strategy) builds the compiled loss and metrics on
        `(y, model(x))`; here they see one prediction per valid step instead, so they are built
        on those shapes.
        """
        if data_batch is None:
            return super()._symbolic_build(iterator=iterator)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data_batch)
        self._check_video(x, training=False)
        if y is not None and self.compiled:
            per_frame = targets.is_per_frame(y.shape, self._output_shape, x.shape[1], y.dtype.is_integer)
            y_step = keras.KerasTensor((None,) + tuple(y.shape[2 if per_frame else 1:]), dtype=y.dtype.name)
            pred_step = keras.KerasTensor((None,) + self._output_shape[1:])
            if self._compile_metrics is not None and not self._compile_metrics.built:
                self._compile_metrics.build(y_step, pred_step)
            if self._compile_loss is not None and not self._compile_loss.built:
                self._compile_loss.build(y_step, pred_step)
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    # ------------------------------------------------------------------ serialization

    def get_config(self):
        return {
            "units": [keras.saving.serialize_keras_object(u) for u in self.frame_units],
            "mode": self.mode,
            "fusion": self.fusion,
            "shortcut": self.shortcut,
            "devices": self.devices,
            "gradient_stats": self.gradient_stats,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["units"] = [keras.saving.deserialize_keras_object(u, custom_objects) for u in config["units"]]
        return cls(**config)
