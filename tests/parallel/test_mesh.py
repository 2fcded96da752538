"""`sw.parallel.data_and_stages`: arguments (its training: `tests/core/test_stages.py`, on 4 host devices)."""

import keras
import pytest

import sideways_tf as sw


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX only")
def test_a_stage_count_that_does_not_divide_the_devices_is_refused():
    with pytest.raises(ValueError, match=r"`num_stages` must divide the number of devices \(3\); got 2"):
        sw.parallel.data_and_stages(2, devices=["cpu:0", "cpu:0", "cpu:0"])


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX only")
def test_one_device_is_one_replica_of_one_stage():
    distribution = sw.parallel.data_and_stages(1, devices=["cpu:0"])  # the CPU, also where JAX has GPUs
    assert tuple(distribution.device_mesh.shape) == (1, 1)
    assert sw.parallel.stage_devices() is None  # not set yet
    keras.distribution.set_distribution(distribution)
    try:
        assert sw.parallel.stage_devices() == ["cpu:0"]
    finally:
        keras.distribution.set_distribution(None)


@pytest.mark.tensorflow_only("the refusal of the TensorFlow backend")
def test_tensorflow_backend_is_refused():
    with pytest.raises(ValueError,
                       match=r"a data x stage mesh runs under KERAS_BACKEND=jax; the backend is 'tensorflow'"):
        sw.parallel.data_and_stages(1)
