"""The frame loop lives inside the graph: its size does not depend on T."""

import tensorflow as tf

import sideways_tf as sw
from tests.helpers import compiled, dense_units, random_clip


def _graph_size(model, frames):
    video, labels = tf.constant(random_clip((2, frames, 5))), tf.constant([0, 1])
    model.build(video.shape)
    graph_def = model._gradient_fn(None).get_concrete_function(video, labels).graph.as_graph_def()
    return len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)


def test_graph_size_does_not_grow_with_clip_length():
    for mode in sw.MODES:
        model = compiled(sw.SidewaysModel(dense_units(4), mode=mode))
        assert _graph_size(model, 9) == _graph_size(model, 65), mode
