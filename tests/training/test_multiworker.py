"""Training over two processes on localhost, under TensorFlow (`TF_CONFIG`, `MultiWorkerMirroredStrategy` and our
own loop) and under JAX (`jax.distributed`, `keras.distribution.DataParallel` and `fit`).

Each test starts its processes itself, with the backend it names, on loopback ports; every process has
a time limit and is killed at the end whatever happens.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.backend_independent("each test starts its own processes with the backend it names")

SCRIPT = os.path.join(os.path.dirname(__file__), "multiworker_script.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 240
TINY = ["--experiment", "quickstart", "--set", "epochs=3", "--set", "steps_per_epoch=3", "--set", "num_examples=32",
        "--set", "validation_steps=1", "--set", "batch_size=4", "--set", "num_frames=11", "--set", "resolution=16",
        "--backup_every", "1"]


def _ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(backend: str, *args) -> subprocess.Popen:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    env.pop("TF_CONFIG", None)
    return subprocess.Popen([sys.executable, SCRIPT, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)


def _finish(processes, timeout=TIMEOUT) -> list[tuple[int, str]]:
    """Each process's exit code and output; fails (killing them all) when they take over `timeout` seconds."""
    deadline, results = time.monotonic() + timeout, []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((process.returncode, output))
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"a process ran over {timeout} s; its output:\n{(error.output or b'')[-3000:]}")
    finally:
        for process in processes:
            _kill(process)
    return results


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate()


def _steps_saved(state) -> int:
    """The optimizer steps of the chief's latest backup (0 before the first)."""
    try:
        return json.loads(state.read_text())["optimizer_steps"]
    except (OSError, ValueError, KeyError):
        return 0


def _weights(path):
    saved = np.load(path)
    return [saved[k] for k in saved.files if k != "loss"], saved["loss"]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_processes_end_with_the_weights_of_one_on_the_combined_batch(backend, tmp_path):
    port0, port1 = _ports(2)
    what = "tf" if backend == "tensorflow" else "jax"
    runs = [_start(backend, what, i, port0, port1, tmp_path / f"worker{i}.npz") for i in (0, 1)]
    runs.append(_start(backend, "single", "-", "-", "-", tmp_path / "single.npz"))
    for code, output in _finish(runs):
        assert code == 0, output[-3000:]
    single, single_loss = _weights(tmp_path / "single.npz")
    for i in (0, 1):
        weights, loss = _weights(tmp_path / f"worker{i}.npz")
        np.testing.assert_allclose(loss, single_loss, rtol=1e-5)
        for a, b in zip(weights, single, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_cli_on_two_processes_resumes_after_a_worker_dies(backend, tmp_path):
    model_dir = tmp_path / "run"
    args = [*TINY, "--model_dir", model_dir]
    # Worker 1 dies right after its backup at step 4 (in epoch 1 of 0-2); worker 0 then waits for it in
    # the next step's all-reduce and is killed once its own backup of step 4 is written.
    port0, port1 = _ports(2)
    crashed = [_start(backend, "cli", i, port0, port1, 4, *args) for i in (0, 1)]
    (code, output), = _finish(crashed[1:])
    assert code == 3, output[-3000:]
    state = model_dir / "backup" / "current" / "state.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _steps_saved(state) < 4:
        time.sleep(0.2)
    _kill(crashed[0])
    assert _steps_saved(state) == 4
    assert not (model_dir / "results.json").exists()

    port0, port1 = _ports(2)
    resumed = [_start(backend, "cli", i, port0, port1, 0, *args) for i in (0, 1)]
    for code, output in _finish(resumed):
        assert code == 0, output[-3000:]
    results = json.loads((model_dir / "results.json").read_text())
    assert results["optimizer_steps"] == 9 and results["first_epoch_this_run"] == 1
    assert len(results["history"]["loss"]) == 2 and "val_loss" in results["history"]
    # Only the chief (worker 0) wrote the run's folder; no backup is left once finished.
    writers = {int(path.name.split(".")[-3]) for folder in ("train", "validation")
               for path in (model_dir / folder).glob("events.out.tfevents.*")}  # events.out.tfevents.TIME.HOST.PID.N.v2
    assert writers == {crashed[0].pid, resumed[0].pid}
    assert not (model_dir / "backup").exists()
