"""`sw.training.strategy`: what each name gives on this machine, the errors, and a run under a strategy."""

import dataclasses

import keras
import numpy as np
import pytest

from sideways_tf.training import STRATEGIES, distribution, experiments, runner
from tests.conftest import BACKEND

TINY = dict(num_examples=16, epochs=1, steps_per_epoch=2, validation_steps=1, batch_size=4, num_frames=11,
            resolution=16, fidelity_every=0)


@pytest.fixture(autouse=True)
def no_accelerator_variables(monkeypatch):
    for name in ("TPU_NAME", "COLAB_TPU_ADDR", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_auto_on_this_machine_is_no_distribution():
    chosen = distribution.strategy("auto")
    assert distribution.num_replicas(chosen) == 1
    if BACKEND == "tensorflow":
        import tensorflow as tf

        assert chosen is tf.distribute.get_strategy()  # the default strategy
    else:
        assert isinstance(chosen, distribution.SingleDevice)
    with chosen.scope():
        keras.Variable(1.0)


@pytest.mark.parametrize("name, message", [("tpu", "no TPU was found"), ("gpu", "no GPU")])
def test_missing_hardware_is_a_value_error_naming_it(name, message):
    if BACKEND == "jax":
        message = f"JAX sees no {name.upper()}"
    with pytest.raises(ValueError, match=message):
        distribution.strategy(name)


def test_unknown_name_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="strategy='mirrored' is not one of .*'auto'.*'multiworker'"):
        distribution.strategy("mirrored")


def test_the_cli_offers_the_same_names():
    from sideways_tf.cli import train

    assert tuple(train.FLAGS["strategy"].parser.enum_values) == STRATEGIES


def test_one_process_is_its_own_chief_and_needs_no_barrier():
    chosen = distribution.strategy("auto")
    assert distribution.is_chief(chosen) and distribution.num_processes(chosen) == 1
    distribution.barrier(chosen)  # returns at once


def test_cluster_arguments_belong_to_multiworker():
    with pytest.raises(ValueError, match="coordinator, process_id only apply to strategy='multiworker'"):
        distribution.strategy("auto", coordinator="127.0.0.1:1234", process_id=0)
    if BACKEND == "tensorflow":
        with pytest.raises(ValueError, match="num_processes: under TensorFlow the workers come from TF_CONFIG"):
            distribution.strategy("multiworker", num_processes=2)
    else:
        with pytest.raises(ValueError, match="0 <= process_id < num_processes"):
            distribution.strategy("multiworker", coordinator="127.0.0.1:1234", num_processes=2, process_id=2)


@pytest.mark.tensorflow_only("TF_CONFIG and MultiWorkerMirroredStrategy")
def test_multiworker_needs_a_cluster(monkeypatch):
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribution.strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribution.strategy("auto")


@pytest.mark.tensorflow_only("tf.distribute")
def test_the_runner_trains_under_mirrored_strategy(tmp_path, mirrored_strategy):
    config = dataclasses.replace(experiments.get("quickstart"), **TINY)
    results = runner.run(config, str(tmp_path), verbose=0, distribution=mirrored_strategy)
    assert results["optimizer_steps"] == 2 and np.isfinite(results["evaluation"]["loss"])


def test_runner_builds_its_model_in_the_scope(tmp_path):
    entered = []

    class Recording(distribution.SingleDevice):
        def scope(self):
            entered.append(True)
            return super().scope()

    config = dataclasses.replace(experiments.get("quickstart"), **TINY)
    results = runner.run(config, str(tmp_path), verbose=0, distribution=Recording())
    assert entered and np.isfinite(results["evaluation"]["loss"])
