"""`sideways-train` end to end in subprocesses: results, TensorBoard tags, resume, bad flags."""

import json
import os
import subprocess
import sys
import time

import pytest

from sideways_tf.training import read_scalars

TINY = ["--set", "epochs=2", "--set", "num_examples=32", "--set", "steps_per_epoch=3", "--set", "validation_steps=1",
        "--set", "batch_size=4", "--set", "num_frames=11", "--set", "resolution=16", "--set", "fidelity_every=2"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def _cli(*args, timeout=600, **kwargs):
    return subprocess.run([sys.executable, "-m", "sideways_tf.cli.train", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, **kwargs)


def _cli_in_process(*args) -> int:
    """`sideways-train ARGS` in this process (absl's flag parsing and all): its exit code."""
    from absl import flags

    from sideways_tf.cli import common, train

    flags.FLAGS.unparse_flags()  # every flag back to its default, whatever an earlier call set
    try:
        common.run(train.main, train.__name__, argv=["sideways-train", *args])
    except SystemExit as exit:
        return 0 if exit.code is None else exit.code if isinstance(exit.code, int) else 1
    return 0


def _scalar_tags(folder):
    return set(read_scalars(str(folder)))


def test_tiny_experiment_end_to_end(tmp_path):
    result = _cli("--experiment", "quickstart", "--model_dir", str(tmp_path), *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["optimizer_steps"] == 6 and results["config"]["mode"] == "skip_sideways"
    assert 0.0 <= results["evaluation"]["accuracy"] <= 1.0 and results["chance_accuracy"] == 0.125
    assert "accuracy" in result.stdout and "chance accuracy" in result.stdout
    config_line = next(line for line in result.stdout.splitlines() if line.startswith("config: "))
    assert config_line.startswith("config: quickstart with ") and len(config_line) < 400, config_line
    train_tags = _scalar_tags(tmp_path / "train")
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_frames_per_second",
                "epoch_unit1_grad_mean", "epoch_unit6_grad_norm", "fidelity/unit1", "fidelity/unit6"):
        assert tag in train_tags, (tag, sorted(train_tags))
    validation_tags = _scalar_tags(tmp_path / "validation")
    assert {"epoch_loss", "epoch_accuracy"} <= validation_tags
    assert not any(tag.startswith("epoch_unit") for tag in validation_tags)
    # The same command again reports the finished run instead of training it again.
    assert _cli_in_process("--experiment", "quickstart", "--model_dir", str(tmp_path), *TINY) == 0
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert _cli_in_process("--experiment", "quickstart", "--model_dir", str(tmp_path), *TINY, "--mode", "bp") == 2


@pytest.mark.backend_independent("the runner's backups")
def test_interrupted_run_resumes_at_the_exact_step(tmp_path):
    # Backups every 2 steps with 3 steps per epoch, so most land in the middle of an epoch: killed
    # anywhere, the run resumes at the backed-up optimizer step and ends with exactly the steps of
    # an uninterrupted run (Keras' BackupAndRestore would replay the epoch's first steps).
    args = ["--experiment", "quickstart", "--model_dir", str(tmp_path), *TINY, "--set", "epochs=40",
            "--backup_every", "2"]
    process = subprocess.Popen([sys.executable, "-m", "sideways_tf.cli.train", *args], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backup = tmp_path / "backup"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if backup.exists() and len(list(backup.rglob("*"))) > 0:
            time.sleep(2)  # let a few more steps be backed up
            break
        time.sleep(0.5)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.kill()
    process.wait()
    assert not (tmp_path / "results.json").exists()
    copy = next(backup / c for c in ("current", "previous") if (backup / c / "state.json").exists())
    saved = json.loads((copy / "state.json").read_text())["optimizer_steps"]
    assert saved > 0
    result = _cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["optimizer_steps"] == 120  # 40 epochs x 3 steps in all: none replayed, none lost
    # It resumed in the epoch of the saved step and trained that epoch's rest, then the others.
    assert results["first_epoch_this_run"] == saved // 3
    assert len(results["history"]["loss"]) == 40 - saved // 3


@pytest.mark.backend_independent("absl flags and configs")
@pytest.mark.parametrize(
    "args, message",
    [(["--experiment", "nope", "--dry_run"], "unknown experiment 'nope'"),
     (["--experiment", "quickstart", "--dry_run", "--set", "colour=red"], "unknown config key 'colour'"),
     (["--experiment", "quickstart", "--dry_run", "--set", "epochs=many"], "--set epochs: expected int"),
     (["--experiment", "quickstart", "--dry_run", "--set", "epochs"], "--set expects key=value"),
     (["--experiment", "quickstart", "--dry_run", "--mode", "backprop"], "config mode='backprop'"),
     (["--experiment", "skip_t6_vgg16_3d_kinetics600", "--dry_run", "--mode", "sideways"], "config mode='sideways'"),
     (["--experiment", "quickstart", "--no_such_flag"], "no_such_flag"),
     (["--experiment", "quickstart"], "--model_dir is required"),
     (["--experiment", "quickstart", "--dry_run", "--set", "learning_rate=nan"], "learning_rate=nan: must be a"),
     (["--experiment", "quickstart", "--dry_run", "--backup_every", "-3"], "--backup_every=-3: must be a positive"),
     (["--experiment", "quickstart", "--dry_run", "--set", "num_frames=5"], "needs clips of at least 11 frames"),
     (["--experiment", "quickstart", "--dry_run", "--set", "decay_epochs=a,b"], "--set decay_epochs: expected comma"),
     (["--experiment", "quickstart", "--dry_run", "--set", "decay_epochs=200,100"], "decay_epochs=(200, 100): must"),
     (["--experiment", "quickstart", "--dry_run", "--set", "num_classes=10"],
      "num_classes=10: dataset 'moving_shapes' with label_set='motion' has 8 classes"),
     (["--experiment", "quickstart", "--dry_run", "--set", "dropout=1.5"], "config dropout=1.5: must be a rate in"),
     (["--experiment", "quickstart", "--dry_run", "--set", "width=0"], "config width=0.0: must be a positive"),
     (["--experiment", "quickstart", "--dry_run", "--set", "clip_value=0"], "config clip_value=0.0: must be"),
     (["--experiment", "quickstart", "--model_dir", "/nonexistent/run", "--strategy", "tpu"], "no TPU was found")],
)
def test_bad_flags_exit_nonzero_naming_them(args, message, capsys):
    assert _cli_in_process(*args) != 0
    assert message in capsys.readouterr().err


@pytest.mark.backend_independent("absl flags and configs")
def test_list_and_dry_run(capsys):
    assert _cli_in_process("--list") == 0
    listing = capsys.readouterr().out
    assert "quickstart" in listing and "skip_t7_full_res_kinetics600" in listing
    assert "sweep sideways_search: weight_decay in [0.0, 0.0001, 0.001, 0.01] x learning_rate in" in listing
    assert _cli_in_process("--experiment", "skip_t1_vgg8_hmdb51", "--dry_run") == 0
    assert "input=(8, 64, 112, 112, 3)" in capsys.readouterr().out


@pytest.mark.backend_independent("absl flags")
def test_the_exit_code_reaches_the_shell():
    result = _cli("--experiment", "nope", "--dry_run", timeout=120)
    assert result.returncode == 2 and "unknown experiment 'nope'" in result.stderr, result.stderr[-2000:]


@pytest.mark.backend_independent("a callback on the logs")
def test_a_diverging_run_stops_and_exits_nonzero_naming_the_problem(tmp_path):
    result = _cli("--experiment", "quickstart", "--model_dir", str(tmp_path), *TINY, "--set", "learning_rate=1e9",
                  "--set", "clip_value=1e9", "--set", "fidelity_every=0")
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "training stopped:" in result.stderr and ("loss became nan" in result.stderr
                                                     or "NaN or infinite values" in result.stderr)
    assert not (tmp_path / "results.json").exists()


@pytest.mark.backend_independent("tf.data cardinality")
def test_a_split_smaller_than_a_batch_is_named(tmp_path, capsys):
    args = ["--experiment", "quickstart", "--model_dir", str(tmp_path), "--set", "num_examples=2", "--set",
            "batch_size=4"]
    assert _cli_in_process(*args) == 2
    assert "the training split yields no batch" in capsys.readouterr().err


@pytest.mark.backend_independent("the runner's backups")
def test_an_unreadable_backup_is_named(tmp_path, capsys):
    args = ["--experiment", "quickstart", "--model_dir", str(tmp_path), *TINY]
    from sideways_tf.training import config as config_lib
    from sideways_tf.training import experiments, run_dir

    config = config_lib.apply_overrides(experiments.get("quickstart"), TINY[1::2])
    run_dir.claim(str(tmp_path), config)  # a run of this configuration was started ...
    for copy in ("current", "previous"):  # ... and both copies of its backup are broken
        folder = tmp_path / "backup" / copy
        folder.mkdir(parents=True)
        (folder / "weights.weights.h5").write_bytes(b"truncated")
        (folder / "state.json").write_text('{"optimizer_steps": 3}')
    assert _cli_in_process(*args) == 2
    assert "cannot resume from the backup in" in capsys.readouterr().err


def test_a_sweep_runs_each_combination_in_its_own_folder_and_resumes(tmp_path, monkeypatch):
    from sideways_tf.training import experiments

    monkeypatch.setitem(experiments.SWEEPS, "tiny_rates", {"learning_rate": (1e-3, 2e-3), "weight_decay": (0.0,)})
    args = ("--experiment", "quickstart", "--model_dir", str(tmp_path), "--sweep", "tiny_rates", *TINY,
            "--set", "epochs=1", "--set", "fidelity_every=0")
    assert _cli_in_process(*args) == 0
    folders = ["learning_rate=0.001,weight_decay=0.0", "learning_rate=0.002,weight_decay=0.0"]
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert [row["folder"] for row in summary["runs"]] == folders and summary["finished"] == 2
    for folder in folders:
        results = json.loads((tmp_path / folder / "results.json").read_text())
        assert results["config"]["learning_rate"] == float(folder.split(",")[0].split("=")[1])
        assert summary["runs"][folders.index(folder)]["evaluation"] == results["evaluation"]
    # Again: every run is read back, none trained.
    stamps = [(tmp_path / f / "results.json").stat().st_mtime_ns for f in folders]
    assert _cli_in_process(*args) == 0
    assert [(tmp_path / f / "results.json").stat().st_mtime_ns for f in folders] == stamps
    assert _cli_in_process("--experiment", "quickstart", "--model_dir", str(tmp_path), "--sweep", "nope") == 2


def test_the_papers_search_is_a_named_sweep():
    from sideways_tf.training import config as config_lib
    from sideways_tf.training import experiments

    combinations = experiments.sweep("sideways_search")
    assert len(combinations) == 8 and combinations[0] == ["weight_decay=0.0", "learning_rate=0.0001"]
    configs = [config_lib.apply_overrides(experiments.get("sideways_t1_vgg8_ucf101"), c) for c in combinations]
    assert {(c.weight_decay, c.learning_rate) for c in configs} == {
        (wd, lr) for wd in (0.0, 1e-4, 1e-3, 1e-2) for lr in (1e-4, 1e-5)}
