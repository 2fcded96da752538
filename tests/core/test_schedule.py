"""Timing of the pipeline: the closed forms, and the steps at which units really start counting."""

import numpy as np
import pytest
from keras import ops

import sideways_tf as sw
from sideways_tf.core import pipeline, schedule
from tests.helpers import SPARSE_CE, compiled, dense_units, random_clip


@pytest.mark.parametrize("depth", [1, 2, 5, 8])
def test_closed_forms(depth):
    for k in range(depth):
        # docs/rules.md numbers units 1..D: unit i first counts at step 2D - 1 - i.
        assert schedule.first_counted_step(k, depth, "sideways") == 2 * depth - 1 - (k + 1)
        assert schedule.first_counted_step(k, depth, "bp") == 0
    assert schedule.first_counted_step(depth - 1, depth, "skip_sideways") == depth - 1
    assert schedule.min_clip_length(depth, "sideways") == 2 * depth - 1
    assert schedule.counted_steps(0, depth, "sideways", 2 * depth - 1) == 1


@pytest.mark.parametrize("mode", ["sideways", "skip_sideways", "fa_skip_sideways"])
def test_unit_first_counts_at_2d_minus_1_minus_i(mode):
    depth, frames = 5, 12
    model = compiled(sw.SidewaysModel(dense_units(depth), mode=mode))
    video = ops.convert_to_tensor(random_clip((2, frames, 6)))
    labels = ops.convert_to_tensor(np.array([0, 2]))
    model.build(video.shape)
    rule = schedule.rule(mode, depth)
    params, states = model.engine.current_values()
    state = pipeline.zero_state(2, model.activation_shapes, "float32")
    first_nonzero = [None] * depth
    for s in range(frames):
        def head(out):
            return SPARSE_CE(labels, out)

        fresh = [[ops.zeros_like(p) for p in unit] for unit in params]
        state, result = pipeline.sideways_step(model.stages, rule, params, states, state, video[:, s], head, fresh)
        for k in range(depth):
            nonzero = any(float(np.abs(np.asarray(g)).max()) > 0 for g in result.accumulators[k])
            assert list(np.asarray(result.counted[k])) == [s >= 2 * depth - 1 - (k + 1)] * 2
            if nonzero and first_nonzero[k] is None:
                first_nonzero[k] = s
    assert first_nonzero == [2 * depth - 1 - i for i in range(1, depth + 1)]


def test_messages_are_zero_until_valid():
    depth = 4
    model = compiled(sw.SidewaysModel(dense_units(depth), mode="skip_sideways"))
    video = ops.convert_to_tensor(random_clip((2, 8, 6)))
    model.build(video.shape)
    rule = schedule.rule("skip_sideways", depth)
    params, states = model.engine.current_values()
    state = pipeline.zero_state(2, model.activation_shapes, "float32")
    for s in range(8):
        state, _ = pipeline.sideways_step(model.stages, rule, params, states, state, video[:, s],
                                          lambda out: SPARSE_CE(np.array([0, 1]), out), params)
        for k, grad in enumerate(state.gradients):
            # The message about h_k sent at step s is used at step s + 1.
            valid = s + 1 >= schedule.first_counted_step(k, depth, "skip_sideways")
            assert (np.abs(np.asarray(grad)).max() > 0) == valid, (s, k)


def test_one_function_decides_the_rule():
    assert schedule.rule("bp", 5) == ("bp", True, 0, False, False, False, True)
    assert schedule.rule("sideways", 5).latency == 4 and not schedule.rule("sideways", 5).synchronous
    exact = schedule.rule("sideways", 5, exact=True)
    assert exact.synchronous and exact.latency == 0 and not exact.through_time
    assert exact.first_counted_step(0, 5) == 0
    # The skip modes' exact reference: backprop through time of the pipeline's network, scored as it is.
    through = schedule.rule("skip_sideways", 5, exact=True)
    assert through.through_time and not through.synchronous and through.latency == 4
    assert through.shortcuts and through.shortcut_gradients
    fa = schedule.rule("fa_skip_sideways", 5, exact=True)
    assert fa.through_time and fa.shortcuts and not fa.shortcut_gradients
    inference = schedule.rule("skip_sideways", 5, exact=True, training=False)
    assert not inference.synchronous and not inference.through_time and inference.latency == 4
    assert schedule.rule("sideways", 5).first_counted_step(0, 5) == 8
    # The ablation without the mask gamma counts every step of the pipelined training rule only.
    unmasked = schedule.rule("sideways", 5, masking=False)
    assert unmasked.first_counted_step(0, 5) == 0 and unmasked.first_valid_input_step(3) == 0
    assert schedule.rule("sideways", 5, exact=True, masking=False).masking
    assert schedule.rule("sideways", 5, training=False, masking=False).first_counted_step(0, 5) == 8
    with pytest.raises(ValueError, match="`mode` must be one of"):
        schedule.rule("backprop", 3)


@pytest.mark.parametrize("mode", schedule.MODES)
@pytest.mark.parametrize("depth, num_frames", [(1, 3), (3, 6), (4, 8), (5, 12)])
def test_the_timeline_agrees_with_the_closed_forms(mode, depth, num_frames):
    rule = schedule.rule(mode, depth)
    table = schedule.timeline(rule, depth, num_frames)
    assert len(table) == num_frames and all(len(row) == depth for row in table)
    for k in range(depth):
        column = [row[k] for row in table]
        assert sum(w.counts for w in column) == schedule.counted_steps(k, depth, mode, num_frames)
        first_input = schedule.first_valid_input_step(k, mode)
        assert [w.frame is not None for w in column] == [s >= first_input for s in range(num_frames)]
    # the top unit's frame at step s is the one its prediction is for: s - latency
    assert [row[-1].frame for row in table] == [s - rule.latency if s >= rule.latency else None
                                               for s in range(num_frames)]
    if rule.shortcuts and depth >= 3:  # the shortcut carries the frame one step newer than the direct path
        assert all(row[k].shortcut_frame == row[k].frame + 1 for row in table for k in range(2, depth)
                   if row[k].frame is not None)


def test_exact_backprop_works_on_the_same_frame_everywhere():
    table = schedule.timeline(schedule.rule("sideways", 4, exact=True), 4, 5)
    assert all(w.frame == s and w.counts and w.shortcut_frame is None for s, row in enumerate(table) for w in row)


def test_the_skip_modes_exact_reference_reads_the_frames_the_pipeline_reads():
    for mode in schedule.SKIP_MODES:
        exact, rule = (schedule.timeline(schedule.rule(mode, 4, exact=e), 4, 7) for e in (True, False))
        frames = [[(w.frame, w.shortcut_frame) for w in row] for row in exact]
        assert frames == [[(w.frame, w.shortcut_frame) for w in row] for row in rule]
        assert frames[4][3] == (1, 2)  # unit 3 at step 4: frame 1 directly, frame 2 through the shortcut


def test_docs_show_the_printed_timeline():
    import os

    docs = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "rules.md")).read()
    for mode in ("sideways", "skip_sideways"):
        assert schedule.format_timeline(schedule.rule(mode, 4), 4, 8, first_unit=1) in docs, mode
