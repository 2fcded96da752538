"""`sw.parallel.balance`: consecutive units grouped over devices by their measured time."""

import keras
import numpy as np
import pytest

import sideways_tf as sw
from sideways_tf.parallel import partition
from tests.helpers import old_keras_under_jax, on_cpu


@pytest.mark.backend_independent("pure Python")
@pytest.mark.parametrize("costs, num_groups, expected", [
    ([1, 1, 1, 1], 2, [[0, 1], [2, 3]]),
    ([4, 1, 1, 1, 1], 2, [[0], [1, 2, 3, 4]]),
    ([1, 1, 1, 1, 4], 2, [[0, 1, 2, 3], [4]]),
    ([5, 1, 1, 1], 1, [[0, 1, 2, 3]]),
    ([3, 1, 1, 1], 4, [[0], [1], [2], [3]]),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9], 3, [[0, 1, 2, 3, 4], [5, 6], [7, 8]]),
])
def test_partition_minimises_the_slowest_group(costs, num_groups, expected):
    groups = partition(costs, num_groups)
    assert groups == expected
    assert [k for g in groups for k in g] == list(range(len(costs)))


@pytest.mark.backend_independent("pure Python")
def test_partition_is_optimal_against_every_cut():
    import itertools

    rng = np.random.default_rng(0)
    for _ in range(20):
        costs = list(rng.uniform(0, 10, size=7))
        best = min(max(sum(costs[a:b]) for a, b in zip((0, *cuts), (*cuts, 7), strict=True))
                   for cuts in itertools.combinations(range(1, 7), 2))
        assert max(sum(costs[k] for k in g) for g in partition(costs, 3)) == pytest.approx(best)


@pytest.mark.backend_independent("argument checks")
@pytest.mark.parametrize("costs, num_groups, match", [
    ([1, 2], 3, r"`num_devices` must be between 1 and the number of units \(2\); got 3"),
    ([1, 2], 0, r"`num_devices` must be between 1 and the number of units \(2\); got 0"),
    ([1, -2], 1, r"`costs` must be non-negative"),
])
def test_partition_arguments_are_checked(costs, num_groups, match):
    with pytest.raises(ValueError, match=match):
        partition(costs, num_groups)


def _units():
    """Four dense units on 64-vectors; unit 2 has ~250x the work of the others."""
    return [keras.layers.Dense(64), keras.layers.Dense(64), keras.Sequential([keras.layers.Dense(8192),
                                                                                keras.layers.Dense(64)]),
            keras.layers.Dense(3)]


@pytest.mark.parametrize("mode", ["sideways", "skip_sideways"])
def test_balance_puts_the_heavy_unit_alone(mode):
    with on_cpu():  # an accelerator runs these small units in about the same (launch-bound) time
        plan = sw.parallel.balance(_units(), (64,), num_devices=2, mode=mode, batch_size=256, repeats=5,
                                   device_names=["a", "b"])
    assert len(plan.unit_ms) == 4 and min(plan.unit_ms) > 0
    assert plan.unit_ms[2] > 5 * max(plan.unit_ms[0], plan.unit_ms[1], plan.unit_ms[3])
    # The heavy unit 2 goes alone or with the light unit 3; every other cut is slower.
    assert plan.groups in ([[0, 1], [2, 3]], [[0, 1, 2], [3]])
    assert plan.devices == [name for name, group in zip(["a", "b"], plan.groups, strict=True) for _ in group]
    assert plan.ideal_speedup == pytest.approx(sum(plan.unit_ms) / max(plan.group_ms))
    assert 1.0 <= plan.ideal_speedup <= sum(plan.unit_ms) / plan.unit_ms[2] + 1e-9  # the heavy unit bounds it


@pytest.mark.skipif(old_keras_under_jax(), reason="devices= under JAX needs Keras >= 3.12 without a distribution")
def test_balance_devices_work_as_the_models_devices():
    plan = sw.parallel.balance(_units(), (64,), num_devices=1, repeats=1)
    model = sw.SidewaysModel(_units(), devices=plan.devices)
    assert model.devices == plan.devices and len(set(plan.devices)) == 1


@pytest.mark.backend_independent("argument checks")
def test_balance_arguments_are_checked():
    with pytest.raises(ValueError, match=r"`device_names` must name 2 devices \(`num_devices`\); got \['a'\]"):
        sw.parallel.balance(_units(), (64,), num_devices=2, device_names=["a"])
    with pytest.raises(ValueError, match=r"between 1 and the number of units \(4\); got 5"):
        sw.parallel.balance(_units(), (64,), num_devices=5)


def test_auto_devices_spread_the_units_over_the_devices_there_are():
    """The TensorFlow session has 2 logical CPUs, the JAX session one device here (4 host devices:
    test_stages.py), or the GPUs of a GPU machine."""
    from tests.helpers import compiled, conv_units, random_clip

    video, labels = random_clip((2, 11, 8, 8, 3)), np.array([0, 3])
    keras.utils.set_random_seed(0)
    placed = compiled(sw.SidewaysModel(conv_units(), mode="skip_sideways", devices="auto"))
    placed.build(video.shape)
    assert placed.get_config()["devices"] == "auto"
    expected = 2
    if keras.backend.backend() == "jax":
        import jax

        expected = len(jax.devices())
        if expected == 1:
            assert placed.devices is None and placed.device_plan is None
            return
    assert len(placed.devices) == 5 and len(set(placed.devices)) == expected
    plan = placed.device_plan  # what was timed and chosen, for the user to read
    assert plan.devices == placed.devices and len(plan.groups) == expected and len(plan.unit_ms) == 5
    assert plan.ideal_speedup == pytest.approx(sum(plan.unit_ms) / max(plan.group_ms))
    assert placed.devices == sorted(placed.devices)
    alone = compiled(sw.SidewaysModel(conv_units(), mode="skip_sideways"))
    alone.build(video.shape)
    alone.set_weights(placed.get_weights())
    for a, b in zip(placed.pseudo_gradients(video, labels), alone.pseudo_gradients(video, labels), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.backend_independent("argument checks")
def test_devices_that_are_not_a_list_or_auto_are_refused():
    with pytest.raises(ValueError, match=r"`devices` must be None, 'auto' or a list of 4 device strings"):
        sw.SidewaysModel(_units(), devices="gpu:0")


@pytest.mark.backend_independent("pure Python")
def test_partition_charges_each_cut_what_crosses_it():
    assert partition([1, 1, 1, 1], 2) == [[0, 1], [2, 3]]
    # A cut after unit 1 sends a large activation: the same balance is found elsewhere.
    assert partition([1, 1, 1, 1], 2, cut_costs=[0, 10, 0]) == [[0, 1, 2], [3]]
    plan = sw.parallel.grouped([1, 1, 1, 1], ["a", "b"], cut_ms=[0.5, 10, 0.5])
    assert plan.groups == [[0], [1, 2, 3]] and plan.group_ms == [1.5, 3]
    assert plan.ideal_speedup == pytest.approx(4 / 3)


@pytest.mark.backend_independent("pure Python")
def test_cut_times_count_activation_message_and_shortcut():
    from sideways_tf.parallel.balance import cut_times

    # [B=2, 10] float32 activations at 1 GB/s: 80 bytes forward, 80 back -> 1.6e-4 ms.
    assert cut_times([(10,), (10,)], "float32", "sideways", 2, 1.0) == pytest.approx([1.6e-4, 1.6e-4])
    # skip_sideways: h_{k-1} also crosses, with its shortcut message back.
    assert cut_times([(10,), (10,)], "float32", "skip_sideways", 2, 1.0) == pytest.approx([1.6e-4, 3.2e-4])


@pytest.mark.backend_independent("pure Python")
def test_call_seconds_dispatches_a_round_back_to_back_and_waits_once_per_call_at_its_end():
    from sideways_tf.parallel.balance import call_seconds

    events = []

    class Result:
        def __float__(self):
            events.append("wait")
            return 0.0

    def compiled(*args):
        events.append("call")
        return Result()

    seconds = call_seconds(compiled, (), repeats=4, rounds=3)
    assert seconds >= 0.0
    # Two warm-up calls, each waited for; then per round 4 calls before any of their 4 waits.
    assert events[:4] == ["call", "wait", "call", "wait"]
    assert events[4:] == (["call"] * 4 + ["wait"] * 4) * 3
