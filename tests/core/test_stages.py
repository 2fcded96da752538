"""Units over devices under JAX (`devices=`): one program per device group (and the mesh runtime).

The checks run in `stages_worker.py`, in a process with 4 host devices (the session has one).
"""

import os
import subprocess
import sys

import keras
import pytest

import sideways_tf as sw
from tests.helpers import dense_units, subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
jax_only = pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX only: the TensorFlow pass places units "
                                                                       "with tf.device (test_model_training.py)")


CHECKS = ("gradients", "masking", "programs", "auto", "no_copies", "fit", "streaming", "regularized", "gpipe",
          "data_and_stages", "replicas_reduce_once")
if keras.backend.backend() == "jax":
    from sideways_tf.core.backends.jax_stages import MIN_KERAS, keras_version

    if keras_version() < MIN_KERAS:  # per-device programs run on older Keras; the mesh (bp, GPipe's) does not
        CHECKS = ("gradients", "masking", "programs", "auto", "streaming", "regularized", "data_and_stages",
                  "replicas_reduce_once")


@jax_only
def test_units_over_four_host_devices_equal_one_device():
    """Every check of `stages_worker.py` (each raises on a difference): one process, as starting JAX is slow."""
    # Host devices, on the CPU platform even where JAX has GPUs (test_gpu_stages.py runs them there).
    env = subprocess_env(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
                         XLA_FLAGS="--xla_force_host_platform_device_count=4")
    result = subprocess.run([sys.executable, "-m", "tests.core.stages_worker", *CHECKS], capture_output=True,
                            text=True, timeout=900, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert [line for line in result.stdout.splitlines() if line.startswith("ok ")] == [f"ok {c}" for c in CHECKS]


def _gpus() -> int:
    import jax

    try:
        return len(jax.devices("gpu"))
    except RuntimeError:
        return 0


@jax_only
def test_units_over_the_gpus_equal_one_device():
    """The same checks with units over the real GPUs (the lent GPU machines; `tests/gpu/run.sh`)."""
    if _gpus() < 2:
        pytest.skip("needs 2 or more GPUs")
    result = subprocess.run([sys.executable, "-m", "tests.core.stages_worker", *CHECKS], capture_output=True,
                            text=True, timeout=900, env=subprocess_env(KERAS_BACKEND="jax", STAGES_PLATFORM="gpu"),
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    done = [line.split()[1].rstrip(":") for line in result.stdout.splitlines() if line.startswith(("ok ", "skipped "))]
    assert done == list(CHECKS), result.stdout


@jax_only
@pytest.mark.parametrize("devices, match", [
    (["cpu:0", "cpu:0", "cpu:9"], r"devices\[2\]='cpu:9' names no device on this machine; JAX has \[.*'cpu:0'.*\]"),
    (["cpu:0", "gpu-0", "cpu:0"], r"devices\[1\]='gpu-0' is not a device name; use 'gpu:0', '/GPU:0'"),
    (["cpu:0", "/CPU:0", "/device:CPU:0"], r"names the same device twice under different names"),
])
def test_device_names_are_checked(devices, match):
    with pytest.raises(ValueError, match=match):
        sw.SidewaysModel(dense_units(3), devices=devices)


@jax_only
def test_older_keras_needs_a_data_and_stage_mesh_for_bp():
    from sideways_tf.core.backends.jax_stages import MIN_KERAS, keras_version

    if keras_version() >= MIN_KERAS:
        pytest.skip(f"Keras {keras.__version__} runs devices= without a distribution")
    with pytest.raises(ValueError, match=r"`devices` under JAX needs Keras >= 3.12 for mode='bp'.*data_and_stages"):
        sw.SidewaysModel(dense_units(3), mode="bp", devices=["cpu:0"] * 3)
    sw.SidewaysModel(dense_units(3), mode="sideways", devices=["cpu:0"] * 3)  # one program per device: any release


@jax_only
@pytest.mark.parametrize("mode, spare", [
    # a chain: group 1 receives h3 and sends d4 (both shaped like h_3); group 0 the other way round
    ("sideways", [{"d4": "h3"}, {"h3": "d4"}]),
    # shortcuts: group 1 also receives h2 (for unit 4), group 0 also s4 and s5 (messages to units 2 and 3)
    ("skip_sideways", [{"d4": "h3", "s4": "h2"}, {"h2": "s4", "h3": "d4"}]),
])
def test_a_step_reuses_the_inbox_pieces_shaped_like_those_it_sends(mode, spare):
    import jax

    from sideways_tf.core import group_steps, schedule

    rule = schedule.rule(mode, 8)
    groups = group_steps.plan([0, 0, 0, 0, 1, 1, 1, 1], [jax.devices()[0]] * 2, rule)
    assert [group_steps.spare_pieces(g) for g in groups] == spare
    for group, matched in zip(groups, spare, strict=True):
        sent = [name for name, _ in group.sends]
        assert all(name in group.reads and name not in group.keeps and matched[name] in sent for name in matched)
