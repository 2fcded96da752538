"""The engine: a built pipeline of stages and the pure functions that train and run it on a clip.

What is algorithm, not Keras glue, lives here: choosing the target of every computation step,
and aligning each stage's parameters and gradients with a model's variable lists (the stages
and their tau are assembled from the units by `core.stage.build_stages`). Everything is a function of explicit values
(parameters and non-trainable state as tensors), so it runs unchanged under TensorFlow and JAX.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

from keras import ops

from sideways_tf.core import backends, episode, pipeline, schedule, targets, through_time
from sideways_tf.core.placement import Placement

FrameLoss = Callable[[object, object, Optional[object]], object]


class ClipResult(NamedTuple):
    """What training on one clip gives, aligned with the variable lists it was given.

    Attributes:
      gradients: one per trainable variable: the pseudo-gradients (or exact gradients).
      non_trainable: one per non-trainable variable: its value after the clip.
      loss: the mean per-step loss over the valid steps.
      predictions: `[B, T', *O]`, the top unit's valid outputs (prediction for frame j at j)
        when the clip started from a fresh pipeline, as one episode.
      labels_per_frame: whether the labels were read per frame.
      weights_per_frame: whether the sample weights were read per frame.
      episode: the `episode.EpisodeResult` (every step's output with its target and
        validity, the stream after the clip, the parameters and optimizer state after updates
        inside the loop), per stage.
      params: one per trainable variable: its value after the clip (changed only by updates
        inside the loop).
    """

    gradients: list
    non_trainable: list
    loss: object
    predictions: object
    labels_per_frame: bool
    weights_per_frame: bool
    episode: object = None
    params: Optional[list] = None


class Engine:
    """The built pipeline of a `SidewaysModel`.

    Args:
      stages: the D built stages.
      mode: one of `schedule.MODES`.
      activation_shapes: `S_k` of units 0..D-2 (no batch axis).
      prediction_shape: `O`, the top unit's output shape (no batch axis).
      devices: None, or one device string per unit.
      programs: under JAX, one compiled program per device group (`core.programs`) for the
        pipelined rules' clips, instead of one program over a mesh.
      place: the placement already made for `devices` and `programs` (the one `build_stages`
        made the variables in), or None to make it here.
      masking: False trains without the mask gamma (`schedule.Rule.masking`, an ablation).
    """

    def __init__(self, stages, mode: str, activation_shapes, prediction_shape, devices=None, programs: bool = False,
                 place: Optional[Placement] = None, masking: bool = True):
        self.stages = list(stages)
        self.mode = mode
        self.masking = masking
        self.activation_shapes = [tuple(s) for s in activation_shapes]
        self.prediction_shape = tuple(prediction_shape)
        self.devices = devices
        self.place = place if place is not None else backends.current().placement(devices, programs=programs)
        if hasattr(self.place, "bind"):
            self.place.bind(self.stages)
        self.programs = bool(getattr(self.place, "multi_program", False))
        # Exact per-frame backprop and frame-by-frame inference have no concurrency across
        # units to gain: they run in one program (under TensorFlow still in each unit's tf.device).
        self.local_place = Placement(devices)

    def placement(self, rule: schedule.Rule) -> Placement:
        """Where a call with `rule` runs its units: across devices only for the pipelined rules."""
        return self.local_place if rule.synchronous or rule.through_time else self.place

    @property
    def depth(self) -> int:
        return len(self.stages)

    def rule(self, exact: bool = False, training: bool = True) -> schedule.Rule:
        """The rule of one call (see `schedule.rule`)."""
        return schedule.rule(self.mode, self.depth, exact=exact, training=training, masking=self.masking)

    # ------------------------------------------------------------ variables

    def split(self, values: Sequence, variables: Sequence, trainable: bool) -> list[list]:
        """Values aligned with `variables` -> per stage, in its own variable order."""
        by_id = {id(v): x for v, x in zip(variables, values, strict=True)}
        own = (lambda s: s.trainable_variables) if trainable else (lambda s: s.non_trainable_variables)
        return [[by_id[id(v)] for v in own(stage)] for stage in self.stages]

    def merge_gradients(self, per_stage: Sequence[Sequence], variables: Sequence) -> list:
        """Per-stage gradients -> one per variable of `variables` (summed if shared, zeros if unused)."""
        by_id = {}
        for stage, grads in zip(self.stages, per_stage, strict=True):
            for v, g in zip(stage.trainable_variables, grads, strict=True):
                by_id[id(v)] = g if id(v) not in by_id else by_id[id(v)] + g
        return [by_id[id(v)] if id(v) in by_id else ops.zeros(v.shape, v.dtype) for v in variables]

    def merge_states(self, per_stage: Sequence[Sequence], variables: Sequence, old: Sequence,
                     trainable: bool = False) -> list:
        """Per-stage values -> one per variable of `variables` (the old value if no stage owns it)."""
        by_id = {}
        for stage, values in zip(self.stages, per_stage, strict=True):
            own = stage.trainable_variables if trainable else stage.non_trainable_variables
            for v, x in zip(own, values, strict=True):
                by_id[id(v)] = x
        return [by_id.get(id(v), o) for v, o in zip(variables, old, strict=True)]

    def regularization(self, params: Sequence, trainable_variables: Sequence, scale: float = 1.0):
        """The weight regularizers' total at `params` and its gradient, unit by unit, times `scale`.

        Each unit's part is computed where its unit runs; `total` brings the parts together.

        Args:
          params: values of `trainable_variables`.
          trainable_variables: the model's trainable variables.
          scale: a factor on both (Keras divides its losses by the number of replicas).

        Returns:
          `(total, gradients)`: a float32 scalar, and one gradient per trainable variable.
        """
        backend = backends.current()
        parts, gradients = [], []
        for stage, values in zip(self.stages, self.split(params, trainable_variables, trainable=True), strict=True):
            regularizers = [v.regularizer for v in stage.trainable_variables]
            if not any(regularizers):
                gradients.append([ops.zeros_like(x) for x in values])
                continue

            def penalty(p, regularizers=regularizers):
                terms = [ops.sum(ops.cast(r(x), "float32")) for r, x in zip(regularizers, p, strict=True) if r]
                return ops.sum(ops.stack(terms)) * scale, None

            _, _, value, (grads,) = backend.value_and_vjp(penalty, [list(values)], head=lambda total: total)
            parts.append(value)
            gradients.append(grads)
        total = self.place.total(parts) if parts else ops.zeros((), "float32")
        return total, self.merge_gradients(gradients, trainable_variables)

    def updater(self, every: int, apply: Callable, trainable_variables: Sequence, optimizer=None) -> episode.Updater:
        """An `episode.Updater` around an optimizer step on the model's variable list.

        Args:
          every: L, the steps between updates.
          apply: `apply(values, optimizer_state, gradients, keep) -> (values, optimizer_state)`,
            one optimizer step with values and gradients aligned with `trainable_variables`;
            `keep[i]` (a bool scalar) asks to leave variable i unchanged.
          trainable_variables: the model's trainable variables.
          optimizer: the Keras optimizer when `apply` is its step and nothing more (`episode.Updater`).
        """

        def apply_per_stage(params, optimizer_state, gradients, counted):
            unused = [None] * len(trainable_variables)
            values = self.merge_states(params, trainable_variables, unused, trainable=True)
            idle = [[ops.logical_not(c)] * len(unit) for unit, c in zip(params, counted, strict=True)]
            keep = self.merge_states(idle, trainable_variables, [ops.convert_to_tensor(True)] * len(values),
                                     trainable=True)
            # A unit that did not count in the window gets no update from it.
            values, optimizer_state = apply(values, optimizer_state,
                                            self.merge_gradients(gradients, trainable_variables), keep)
            return self.split(values, trainable_variables, trainable=True), optimizer_state

        return episode.Updater(every=every, apply=apply_per_stage, optimizer=optimizer,
                               variables=tuple(trainable_variables) if optimizer is not None else ())

    # ------------------------------------------------------------ clips

    def label_layout(self, labels, sample_weight, num_frames) -> tuple[bool, bool]:
        """`(labels_per_frame, weights_per_frame)` for labels `[B, ...]` or `[B, T, ...]`."""
        per_frame = targets.is_per_frame(
            tuple(labels.shape), (None,) + self.prediction_shape, num_frames, targets.is_integer(labels)
        )
        weights_per_frame = sample_weight is not None and len(sample_weight.shape) == 2 and per_frame
        return per_frame, weights_per_frame

    def train_clip(
        self,
        params: Sequence,
        states: Sequence,
        trainable_variables: Sequence,
        non_trainable_variables: Sequence,
        video,
        labels,
        sample_weight,
        frame_loss: FrameLoss,
        exact: bool = False,
        stream: Optional[episode.Stream] = None,
        starts=None,
        updater: Optional[episode.Updater] = None,
        optimizer_state=(),
        flush: bool = True,
    ) -> ClipResult:
        """Trains on one clip (or one chunk of streams) with the model's rule or its exact reference.

        Without an `updater` nothing is applied: the gradients are the clip's.

        Args:
          params: values of `trainable_variables`.
          states: values of `non_trainable_variables`.
          trainable_variables, non_trainable_variables: the model's variable lists.
          video: `[B, T, *F]`.
          labels: `[B, ...]` per clip or `[B, T, ...]` per frame.
          sample_weight: None, `[B]` or `[B, T]`.
          frame_loss: `frame_loss(y, y_pred, sample_weight)`, the loss of one frame's prediction.
          exact: the rule's exact reference instead of the rule (`schedule.rule`).
          stream, starts, updater, optimizer_state, flush: streaming (`episode.train_episode`).

        Returns:
          A `ClipResult` aligned with the variable lists.
        """
        rule = self.rule(exact=exact)
        num_frames = video.shape[1]
        labels_per_frame, weights_per_frame = self.label_layout(labels, sample_weight, num_frames)

        def top_loss(target, out):
            return frame_loss(target["y"], out, target.get("w"))

        place = self.placement(rule)
        plain = stream is None and starts is None and updater is None
        if rule.through_time and not plain:
            raise ValueError("Exact gradients through time (a skip mode's exact reference) take one clip: no "
                             "`stream`, `starts` or `updater`.")
        if self.programs and not rule.synchronous and not rule.through_time:
            return self._train_clip_on_programs(rule, params, states, trainable_variables, non_trainable_variables,
                                                video, labels, sample_weight, top_loss, labels_per_frame,
                                                weights_per_frame, None if plain else dict(
                                                    stream=stream, starts=starts, updater=updater,
                                                    optimizer_state=optimizer_state, flush=flush))

        def run(per_stage_params, per_stage_states, video, labels, sample_weight, stream, starts, optimizer_state):
            # Every array is an argument, not a closure, so that `place.wrap` hands it to the
            # program of each device (sharded on the batch under a data x stage mesh).
            def frame_target(s):
                return targets.frame_target(labels, sample_weight, s, labels_per_frame, weights_per_frame)

            if rule.through_time:
                return through_time.train_through_time(self.stages, rule, per_stage_params, per_stage_states, video,
                                                       frame_target, top_loss, self.activation_shapes, place)
            return episode.train_episode(self.stages, rule, per_stage_params, per_stage_states, video, frame_target,
                                         top_loss, self.activation_shapes, place, stream=stream, starts=starts,
                                         updater=updater, optimizer_state=optimizer_state, flush=flush)

        result = place.wrap(run)(
            self.split(params, trainable_variables, trainable=True),
            self.split(states, non_trainable_variables, trainable=False),
            video, labels, sample_weight, stream, starts, optimizer_state,
        )
        return ClipResult(
            gradients=self.merge_gradients(result.gradients, trainable_variables),
            # Each replica of a data-parallel strategy saw its share of the batch: their batch-norm
            # statistics are averaged so that every replica keeps the same copy.
            non_trainable=self.merge_states([backends.current().mean_over_replicas(s) for s in result.states],
                                            non_trainable_variables, states),
            loss=result.loss,
            predictions=result.outputs[:, rule.latency:],
            labels_per_frame=labels_per_frame,
            weights_per_frame=weights_per_frame,
            episode=result,
            params=self.merge_states(result.params, trainable_variables, params, trainable=True),
        )

    def _train_clip_on_programs(self, rule, params, states, trainable_variables, non_trainable_variables, video,
                                labels, sample_weight, top_loss, labels_per_frame, weights_per_frame,
                                streaming: Optional[dict]) -> ClipResult:
        """`train_clip` on one program per device group (`core.programs`; a chunk of streams:
        `core.program_streams`)."""
        from sideways_tf.core.group_steps import Clip
        from sideways_tf.core.program_streams import train_stream

        def frame_target(labels, sample_weight, s):
            return targets.frame_target(labels, sample_weight, s, labels_per_frame, weights_per_frame)

        per_stage = (self.split(params, trainable_variables, trainable=True),
                     self.split(states, non_trainable_variables, trainable=False))
        if streaming is None:
            clip = Clip(rule, frame_target, top_loss, training=True)
            gradients, new_states, loss, outputs, valid = self.place.train_episode(
                self.stages, clip, *per_stage, video, labels, sample_weight, self.activation_shapes)
            result = episode.EpisodeResult(gradients=gradients, states=new_states, loss=loss, outputs=outputs,
                                           output_targets=None, output_valid=valid, stream=None,
                                           params=per_stage[0], optimizer_state=())
        else:
            clip = Clip(rule, frame_target, top_loss, training=True, streaming=True)
            result = train_stream(self.place, self.stages, clip, *per_stage, video, labels, sample_weight,
                                  self.activation_shapes, **streaming)
        return ClipResult(
            gradients=self.merge_gradients(result.gradients, trainable_variables),
            non_trainable=self.merge_states(result.states, non_trainable_variables, states),
            loss=result.loss,
            predictions=result.outputs[:, rule.latency:],
            labels_per_frame=labels_per_frame,
            weights_per_frame=weights_per_frame,
            episode=result,
            params=self.merge_states(result.params, trainable_variables, params, trainable=True),
        )

    def current_values(self) -> tuple[list[list], list[list]]:
        """Per stage, the current values of its trainable and non-trainable variables.

        Read through `variable.value`, so inside a `keras.StatelessScope` (as in
        `Layer.stateless_call`) these are the scope's values.
        """
        params = [[v.value for v in stage.trainable_variables] for stage in self.stages]
        states = [[v.value for v in stage.non_trainable_variables] for stage in self.stages]
        return params, states

    def init_states(self, batch_size) -> dict:
        """The state of streaming inference before any frame: `{"steps": [B] int32, "h{k}": [B, *S_k]}`.

        `batch_size` may be a Python int or a scalar tensor.
        """
        dtype = self.stages[0].compute_dtype
        zero = pipeline.zero_state(batch_size, [] if self.rule(training=False).synchronous else self.activation_shapes,
                                   dtype)
        return {"steps": zero.steps, **{f"h{k}": a for k, a in enumerate(zero.activations)}}

    def frame_step(self, params: Sequence[Sequence], states: Sequence[Sequence], frame, state: dict):
        """One step of streaming inference: `(frame [B, *F], state) -> (prediction [B, *O], state)`.

        The prediction is for the frame that entered `D - 1` steps earlier (valid once
        `state["steps"] >= D - 1`; in `"bp"` it is this frame's). Frame by frame this equals
        `predict_clip` on the whole clip.
        """
        rule = self.rule(training=False)
        frame = ops.cast(frame, self.stages[0].compute_dtype)
        if rule.synchronous:
            out, _ = pipeline.synchronous_forward(self.stages, rule, params, states, frame, self.devices)
            return out, {"steps": state["steps"] + 1}
        activations = tuple(state[f"h{k}"] for k in range(self.depth - 1))
        pipe = pipeline.PipelineState(steps=state["steps"], activations=activations, gradients=activations)
        pipe, out = pipeline.inference_step(self.stages, rule, params, states, pipe, frame, self.local_place)
        return out, {"steps": pipe.steps, **{f"h{k}": a for k, a in enumerate(pipe.activations)}}

    def predict_clip(self, video):
        """Per-frame predictions `[B, T', *O]` of a clip `[B, T, *F]` (no gradients, no state change)."""
        params, states = self.current_values()
        rule = self.rule(training=False)
        place = self.placement(rule)
        if self.programs and not rule.synchronous:
            return self.place.inference_episode(self.stages, rule, params, states, video, self.activation_shapes)
        return place.wrap(episode.inference_episode)(self.stages, rule, params, states, video, self.activation_shapes,
                                                     place)
