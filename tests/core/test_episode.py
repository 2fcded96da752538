"""The frame loop lives inside the compiled program: its size does not depend on T."""

import keras
import numpy as np
from keras import ops

import sideways_tf as sw
from tests.helpers import compiled, dense_units, random_clip


def _program_size(model, frames):
    video, labels = ops.convert_to_tensor(random_clip((2, frames, 5))), ops.convert_to_tensor(np.array([0, 1]))
    model.build(video.shape)
    function = model.gradient_function()
    params = [ops.convert_to_tensor(v.value) for v in model.trainable_variables]
    states = [ops.convert_to_tensor(v.value) for v in model.non_trainable_variables]
    if keras.backend.backend() == "jax":
        return len(function.lower(params, states, video, labels, None).as_text().splitlines())
    graph_def = function.get_concrete_function(params, states, video, labels, None).graph.as_graph_def()
    return len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)


def test_program_size_does_not_grow_with_clip_length():
    for mode in sw.MODES:
        sizes = [_program_size(compiled(sw.SidewaysModel(dense_units(4), mode=mode)), frames) for frames in (9, 65)]
        assert sizes[0] == sizes[1], mode
