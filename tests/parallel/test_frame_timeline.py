"""Reading a profile of per-device programs (`benchmarks/frame_timeline.py`): lanes, busy time, medians."""

import pytest

from benchmarks import frame_timeline

pytestmark = pytest.mark.backend_independent("parses trace events: plain Python")


def _trace(frames=2):
    """A host thread calling a step (graph update and launch inside) and copying each frame; a GPU
    whose compute stream runs two kernels per frame and whose copy stream moves one piece."""
    events = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
              {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/device:GPU:0"}},
              {"ph": "M", "name": "thread_name", "pid": 2, "tid": 7, "args": {"name": "Stream #7(Compute)"}},
              {"ph": "M", "name": "thread_name", "pid": 2, "tid": 8, "args": {"name": "Stream #8(MemcpyP2P)"}}]
    for f in range(frames):
        t = 1000.0 * f
        events += [{"ph": "X", "pid": 1, "tid": 3, "name": "PjitFunction(step)", "ts": t, "dur": 400},
                   {"ph": "X", "pid": 1, "tid": 3, "name": "PjitFunction(step)", "ts": t, "dur": 399},  # nested twin
                   {"ph": "X", "pid": 1, "tid": 3, "name": "command_buffer::update", "ts": t + 50, "dur": 100},
                   {"ph": "X", "pid": 1, "tid": 3, "name": "cuGraphLaunch (CudaGraph:12)", "ts": t + 200, "dur": 150},
                   {"ph": "X", "pid": 1, "tid": 3, "name": "batched_copy_array_to_devices_with_sharding",
                    "ts": t + 450, "dur": 50},
                   {"ph": "X", "pid": 2, "tid": 7, "name": "conv", "ts": t + 400, "dur": 100},
                   {"ph": "X", "pid": 2, "tid": 7, "name": "fusion", "ts": t + 450, "dur": 150},  # overlaps
                   {"ph": "X", "pid": 2, "tid": 8, "name": "MemcpyP2P", "ts": t + 600, "dur": 10}]
    return events


def test_lanes_split_devices_and_workers_and_merge_nested_calls():
    found = frame_timeline.lanes(_trace())
    gpu = found["devices"]["/device:GPU:0"]
    assert gpu["kernels"] == [(400.0, 500.0), (450.0, 600.0), (1400.0, 1500.0), (1450.0, 1600.0)]
    assert gpu["copies"] == [(600.0, 610.0), (1600.0, 1610.0)]
    (worker,) = found["workers"]
    assert worker["calls"] == [(0.0, 400.0), (1000.0, 1400.0)]
    assert worker["launches"] == [(200.0, 350.0), (1200.0, 1350.0)]


def test_summary_counts_each_device_busy_once_where_kernels_overlap():
    result = frame_timeline.summary(frame_timeline.lanes(_trace()), frames=2)
    assert result["clip_ms"] == 1.6 and result["ms_per_frame"] == 0.8
    assert result["/device:GPU:0_busy_ms_per_frame"] == 0.2  # 400-600 per frame, not 100 + 150
    assert result["/device:GPU:0_busy_of_clip"] == 0.25
    assert (result["worker0_call_ms"], result["worker0_graph_update_ms"], result["worker0_graph_launch_ms"],
            result["worker0_copy_ms"]) == (0.4, 0.1, 0.15, 0.05)


def test_a_profile_without_step_calls_is_named():
    events = [e for e in _trace() if e.get("name") != "PjitFunction(step)"]
    with pytest.raises(ValueError, match="no step call of a device group"):
        frame_timeline.summary(frame_timeline.lanes(events), frames=2)


def test_union_joins_intervals_closer_than_the_gap():
    assert frame_timeline.union([(5, 6), (0, 2), (2.5, 3)], gap=1) == [[0, 3], [5, 6]]
