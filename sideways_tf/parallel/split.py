"""`sw.split`: a chain-shaped Keras model cut into units for `SidewaysModel`.

A unit of a Sideways pipeline hands exactly one tensor to the next. So a model can be cut after
a layer only where exactly one tensor is alive: every tensor produced so far that a later layer
reads is that layer's output. In a `keras.Sequential` every layer boundary is such a point; in a
ResNet the points lie between residual blocks (never inside one, where the shortcut keeps a
second tensor alive); in an EfficientNet or a MobileNetV2, between stages and blocks without a
skip connection. A model nested as a layer (a backbone under a new head) is unfolded first
(`unfolded`), so that it is cut inside too. `cut_points(model)` lists the points; `split`
chooses `num_units - 1` of them so that the costliest unit is as cheap as it can be
(`balance.partition`), and returns one functional sub-model per unit. The sub-models call the
original model's layers: weights are shared, not copied, so pretrained weights carry over and
training the units trains the model.
"""

from __future__ import annotations

import inspect
from typing import Optional, Sequence, Union

import keras
import numpy as np

from sideways_tf.parallel.balance import partition, unit_times

BALANCES = ("time", "params", "flops")
_BUILD_FLAT = ("build the network flat (keras.applications.X(input_tensor=inputs, include_top=False), then the head "
               "on its `.output`)")


def _inbound_names(node) -> list[str]:
    """The names of the layers whose outputs a node of a layer's config reads."""
    found = []

    def visit(x):
        if isinstance(x, dict):
            if x.get("class_name") == "__keras_tensor__":
                found.append(x["config"]["keras_history"][0])
                return
            for value in x.values():
                visit(value)
        elif isinstance(x, (list, tuple)):
            for value in x:
                visit(value)

    visit(node)
    return found


def _graph(model: keras.Model) -> tuple[list, dict]:
    """`(operations in order, without input layers; per operation name, the operation names it reads)`.

    A functional model's operations are its layers and the `keras.ops` it calls on symbolic
    tensors (`x + y` in a residual block is an `Add` operation, not a layer)."""
    if isinstance(model, keras.Sequential):
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        names = [layer.name for layer in layers]
        return layers, {name: ([names[i - 1]] if i else []) for i, name in enumerate(names)}
    layers = [op for op in model.operations if not isinstance(op, keras.layers.InputLayer)]
    reads = {}
    for entry in model.get_config()["layers"]:
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise ValueError(f"layer {entry['name']!r} is called {len(nodes)} times in the model: a layer used in "
                             f"several places cannot be cut into units.")
        reads[entry["name"]] = _inbound_names(nodes)
    return layers, reads


def _check_model(model) -> None:
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model (Sequential or functional); got {type(model).__name__}.")
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError("`model` must be built with a known input shape (e.g. keras.Input((112, 112, 3)) first, or "
                         "keras.applications.X(input_shape=(112, 112, 3))) so that its graph can be cut.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"`model` must have one input and one output (a frame in, a prediction out); it has "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs.")
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            raise ValueError(f"layer {layer.name!r} keeps state across calls (stateful=True): Sideways carries no "
                             f"state of a unit from one frame to the next other than its variables.")
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"`model`'s input shape {(None, *shape)} must be fully defined (build it with the frame "
                         f"shape you will train on).")


def unfolded(model: keras.Model) -> tuple[keras.Model, dict]:
    """`model` with every model nested in it as a layer (a backbone under a new head) called layer by
    layer on its input instead, so that it can be cut inside; and per operation name its output in
    that model's graph. `model` itself when nothing is nested.

    The layers are the same objects (weights shared); the result computes what `model` does.

    Args:
      model: a built `keras.Sequential` or functional model with one input.

    Returns:
      `(model, outputs)`: the unfolded model (or `model`) and, per operation name, its output
      tensor in that model's graph.

    Raises:
      ValueError: naming a nested model that cannot be unfolded (several inputs, a call argument
        that is neither a tensor nor a plain value, a name used twice).
    """
    own = model.layers if isinstance(model, keras.Sequential) else model.operations
    if not any(isinstance(layer, keras.Model) for layer in model.layers):
        return model, {op.name: op.output for op in own if not isinstance(op, keras.layers.InputLayer)}
    inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    produced: dict = {}
    flat = keras.Model(inputs, _call_unfolded(model, inputs, produced), name=model.name)
    return flat, {name: values[0] for name, values in produced.items() if len(values) == 1}


def _call_unfolded(model: keras.Model, x, produced: dict, training: Optional[bool] = None):
    """`model(x)` on a symbolic `x`, calling its own operations (and those of models nested in it) one
    by one; each operation's outputs go into `produced` under its name. `training`: the value the
    model was called with (`base(x, training=True)`), passed on to each of its layers that takes it;
    as in Keras, a flag given when the result is called overrides it."""
    if len(model.inputs) != 1:
        raise ValueError(f"the model {model.name!r} nested in the one to split has {len(model.inputs)} inputs: only a "
                         f"nested model with one input can be unfolded and cut inside.")

    def record(name: str, outputs):
        if name in produced:
            raise ValueError(f"the name {name!r} is used twice in the model and the models nested in it: rename one "
                             f"so that it can be unfolded and cut.")
        produced[name] = keras.tree.flatten(outputs)

    def call(layer, args, kwargs):
        if isinstance(layer, keras.Model):
            wanted = kwargs.get("training", training)
            unknown = sorted(key for key, value in kwargs.items() if key != "training" and value is not None)
            if unknown:
                raise ValueError(f"the model {layer.name!r} nested in the one to split is called with {unknown}: only "
                                 f"`training` can be kept when it is unfolded; {_BUILD_FLAT}.")
            return _call_unfolded(layer, args[0], produced, wanted)
        if training is not None and "training" not in kwargs and _takes_training(layer):
            kwargs = {**kwargs, "training": training}
        return layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            x = call(layer, [x], {})
            record(layer.name, x)
        return x
    config = model.get_config()
    operations = {op.name: op for op in model.operations}
    local = {}
    for entry in config["layers"]:
        name = entry["name"]
        if entry["class_name"] == "InputLayer":
            local[name] = [x]
            continue
        node = entry["inbound_nodes"][0]
        args, kwargs = _filled(node["args"], local, name), _filled(node["kwargs"], local, name)
        record(name, call(operations[name], args, kwargs))
        local[name] = produced[name]
    name, _, index = keras.tree.flatten(config["output_layers"])[:3]
    return local[name][index]


def _takes_training(operation) -> bool:
    """Whether a layer's `call` has a `training` argument (a `keras.ops` operation has none)."""
    if not isinstance(operation, keras.layers.Layer):
        return False
    return "training" in inspect.signature(operation.call).parameters


def _filled(value, produced: dict, layer: str):
    """A node's serialised call arguments with each recorded tensor replaced by the one produced here."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            source, _, index = value["config"]["keras_history"]
            return produced[source][index]
        if "class_name" in value:
            raise ValueError(f"layer {layer!r} of a nested model is called with a {value['class_name']} argument: it "
                             f"cannot be unfolded; {_BUILD_FLAT}.")
        return {key: _filled(item, produced, layer) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_filled(item, produced, layer) for item in value)
    return value


# A cut after zero padding sends a larger tensor than the cut before it with nothing more in it, and in
# the skip modes the shortcut from before could not be pooled up to the padded size (MobileNetV2's 28 -> 29).
_PADDING = (keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D, keras.layers.ZeroPadding3D)


def cut_points(model: keras.Model) -> list[str]:
    """The names of the layers after which `model` can be cut: where their output is the only tensor alive.

    In a functional model the `keras.ops` called on its tensors count as layers here (a residual
    `x + y` is an operation named like `add_3`, and a block can be cut after it, never inside).
    Zero padding is never cut after (the cut before it hands on the same content, smaller).

    Args:
      model: a built `keras.Sequential` or functional model with one input and one output.

    Returns:
      Layer (and operation) names in the model's order (the last one excluded).

    Raises:
      ValueError: when the model has several inputs or outputs, an undefined input shape,
        stateful layers, or a layer called more than once.
    """
    return _points(_checked(model)[0])


def _checked(model: keras.Model) -> tuple[keras.Model, dict]:
    """`unfolded(model)`, the model checked before and, when something was unfolded, after (the
    layers of nested models too)."""
    _check_model(model)
    flat, outputs = unfolded(model)
    if flat is not model:
        _check_model(flat)
    return flat, outputs


def _points(model: keras.Model) -> list[str]:
    """`cut_points` of a checked model with nothing nested (`_checked`)."""
    layers, reads = _graph(model)
    order = {layer.name: i for i, layer in enumerate(layers)}
    last_read = {}
    for name, sources in reads.items():
        for source in sources:
            if source in order and name in order:
                last_read[source] = max(last_read.get(source, -1), order[name])
    points = []
    for i, layer in enumerate(layers[:-1]):
        alive = [k for k in range(i + 1) if last_read.get(layers[k].name, -1) > i]
        if alive == [i] and len(keras.tree.flatten(layer.output)) == 1 and not isinstance(layer, _PADDING):
            points.append(layer.name)
    return points


def _segment_params(segment: keras.Model) -> float:
    return float(sum(int(np.prod(w.shape)) for w in segment.weights))


def _segment_flops(segment: keras.Model) -> float:
    """Multiply-adds of the segment's convolutions and dense layers, per example (others: free)."""
    total = 0.0
    for layer in segment.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None and hasattr(layer, "depthwise_kernel"):
            kernel = layer.depthwise_kernel
        if kernel is None:
            continue
        output = layer.output.shape[1:-1] if len(layer.output.shape) > 2 else ()
        total += float(np.prod(kernel.shape)) * float(np.prod([d for d in output if d]) or 1)
    return total


def split(
    model: keras.Model,
    num_units: int,
    frame_shape: Optional[Sequence[int]] = None,
    balance: Union[str, Sequence[str]] = "time",
    batch_size: int = 8,
    repeats: int = 5,
) -> list[keras.Model]:
    """Cuts a chain-shaped Keras model into `num_units` units for `SidewaysModel`.

    Example:
    ```python
    backbone = keras.applications.ResNet50(weights=None, input_shape=(112, 112, 3), classes=51,
                                           classifier_activation=None)
    units = sw.split(backbone, 8)                          # cut between residual blocks, by time
    model = sw.SidewaysModel(units, mode="skip_sideways")
    ```

    Args:
      model: a built `keras.Sequential` or functional model with one input (a frame) and one
        output, cut only where exactly one tensor is alive (`cut_points`).
      num_units: how many units, at most one more than the cut points.
      frame_shape: the frame shape `F` you will train on; it must be the model's input shape
        (None: the model's).
      balance: how to choose the cuts: `"time"` (each piece's forward and VJP timed as a
        pipeline step runs it, `sw.parallel.balance`'s timer), `"params"` or `"flops"`
        (multiply-adds of convolutions and dense layers); or the names of the `num_units - 1`
        layers to cut after.
      batch_size, repeats: for `"time"`: frames per timed call and calls per piece.

    Returns:
      `num_units` functional models, each from one cut's tensor to the next, calling the
      original model's layers (weights shared with `model`, not copied).

    Raises:
      ValueError: naming what is wrong: the model's inputs or outputs, stateful layers,
        `num_units` against the cut points, a requested cut that is not a cut point (the
        allowed ones are listed), an unknown `balance`, or a `frame_shape` that differs from
        the model's input.
    """
    model, outputs = _checked(model)
    points = _points(model)
    shape = tuple(model.inputs[0].shape[1:])
    if frame_shape is not None and tuple(frame_shape) != shape:
        raise ValueError(f"`frame_shape` {tuple(frame_shape)} differs from the model's input shape {shape}: build "
                         f"the model on the frames you will train on.")
    if isinstance(num_units, bool) or not isinstance(num_units, int) or not 1 <= num_units <= len(points) + 1:
        raise ValueError(f"`num_units` must be between 1 and {len(points) + 1} (the model has {len(points)} cut "
                         f"points: {points}); got {num_units!r}.")
    if isinstance(balance, str):
        if balance not in BALANCES:
            raise ValueError(f"`balance` must be one of {BALANCES} or a list of layer names to cut after; got "
                             f"{balance!r}.")
        pieces = _pieces(model, outputs, points)
        if balance == "params":
            costs = [_segment_params(p) for p in pieces]
        elif balance == "flops":
            costs = [_segment_flops(p) for p in pieces]
        else:
            costs = _piece_times(pieces, shape, batch_size, repeats)
        groups = partition(costs, num_units)
        chosen = [points[group[-1]] for group in groups[:-1]]
    else:
        chosen = list(balance)
        unknown = [name for name in chosen if name not in points]
        if unknown or len(chosen) != num_units - 1:
            raise ValueError(f"`balance` must name {num_units - 1} layers to cut after, among the model's cut points "
                             f"{points} (a cut inside a residual block or a branch would leave two tensors alive); "
                             f"got {chosen}" + (f", of which {unknown} are not cut points." if unknown else "."))
        chosen = sorted(chosen, key=points.index)
    return _pieces(model, outputs, chosen)


def _pieces(model: keras.Model, outputs: dict, cuts: Sequence[str]) -> list[keras.Model]:
    """One functional model per stretch between consecutive cuts (layers shared with `model`);
    `outputs`: per operation name its output in `model`'s graph (`unfolded`)."""
    ends = [outputs[name] for name in cuts] + [model.outputs[0]]
    starts = [model.inputs[0]] + ends[:-1]
    return [keras.Model(start, end, name=f"{model.name}_unit_{k}") for k, (start, end) in
            enumerate(zip(starts, ends, strict=True))]


def _piece_times(pieces: Sequence[keras.Model], frame_shape, batch_size: int, repeats: int) -> list[float]:
    """Each piece's forward + VJP time in ms, as `sw.parallel.balance` times a unit."""
    from sideways_tf.core.stage import build_stages

    stages, activation_shapes, _ = build_stages(pieces, frame_shape, "sideways", "concat", "auto")
    return unit_times(stages, activation_shapes, frame_shape, "sideways", batch_size, repeats)
