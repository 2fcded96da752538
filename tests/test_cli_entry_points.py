"""The console entry points (`sideways_tf_cli`): `--help`, a quiet start-up, and the quickstart's output."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# No TF_CPP_MIN_LOG_LEVEL here: the entry points must silence TensorFlow by themselves.
ENV = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH")}
ENV["PYTHONPATH"] = REPO


def _entry(name, *args, timeout=600):
    code = f"import sys, sideways_tf_cli; sys.argv = ['sideways-{name}', *sys.argv[1:]]; sideways_tf_cli.{name}()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV, cwd=REPO)


@pytest.mark.backend_independent("absl flags")
@pytest.mark.parametrize("name, flag", [("train", "--experiment"), ("quickstart", "--epochs"),
                                        ("stream", "--video"), ("reproduce", "--claims")])
def test_help_exits_zero_and_lists_the_commands_own_flags(name, flag):
    result = _entry(name, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert flag in result.stdout and f"sideways-{name}" in result.stdout
    assert "--helpfull" in result.stdout or name == "stream"
    assert "--alsologtostderr" not in result.stdout  # absl's own flags only with --helpfull


@pytest.mark.tensorflow_only("the quickstart trains on tf.data moving shapes")
def test_tiny_quickstart_prints_headers_table_and_plot_quietly(tmp_path):
    pytest.importorskip("matplotlib")
    result = _entry("quickstart", "--model_dir", str(tmp_path), "--epochs", "2", "--set", "num_examples=32",
                    "--set", "steps_per_epoch=2", "--set", "validation_steps=1", "--set", "batch_size=4",
                    "--set", "num_frames=11", "--set", "resolution=16")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("sideways-quickstart: ") and f"tensorboard --logdir {tmp_path}" in out.splitlines()[1]
    assert "sideways trains small_cnn (6 units" in out and "skip_sideways trains small_cnn (6 units" in out
    assert out.count("epoch   2/2  loss") == 2 and "grad_mean" not in out
    assert "accuracy (last 2 epochs)" in out and f"learning curves: {tmp_path}/quickstart.png" in out
    assert "Not the expected result: Skip-Sideways" in out  # 2 tiny epochs learn nothing, and say so
    assert (tmp_path / "quickstart.png").stat().st_size > 1000
    for noise in ("cuInit", "oneDNN", "cuda drivers", "shuffle=True"):
        assert noise not in result.stderr and noise not in out, noise
    rows = json.loads((tmp_path / "quickstart.json").read_text())
    assert [r["mode"] for r in rows] == ["sideways", "skip_sideways"] and len(rows[0]["val_accuracy"]) == 2


@pytest.mark.backend_independent("a sentence from numbers")
def test_the_quickstart_states_its_conclusion_in_one_sentence():
    # In a process of its own: the command's module defines absl flags that `sideways-train`'s share.
    code = ("from sideways_tf.cli.quickstart import conclusion\n"
            "for side, skip in ((0.12, 0.66), (0.12, 0.45), (0.2, 0.66)):\n"
            "    print(conclusion([{'mode': 'sideways', 'accuracy': side, 'chance': 0.125},\n"
            "                      {'mode': 'skip_sideways', 'accuracy': skip, 'chance': 0.125}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=ENV,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    expected, *failed = result.stdout.splitlines()
    assert expected == ("Skip-Sideways learns the motion (0.66 held out, chance 0.125); Sideways stays at chance "
                        "(0.12): its per-frame model cannot see motion.")
    assert len(failed) == 2 and all(line.startswith("Not the expected result: Skip-Sideways") for line in failed)


@pytest.mark.backend_independent("module aliases")
@pytest.mark.parametrize("old, new", [("sideways_tf.train", "sideways_tf.cli.train"),
                                      ("sideways_tf.quickstart", "sideways_tf.cli.quickstart"),
                                      ("sideways_tf.stream", "sideways_tf.cli.stream"),
                                      ("sideways_tf.reproduce.cli", "sideways_tf.cli.reproduce")])
def test_the_commands_old_modules_are_deprecated_aliases(old, new):
    code = (f"import warnings; warnings.simplefilter('always'); import {new} as new; import {old} as old; "
            "assert old.main is new.main and old.run_main is new.run_main")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=ENV,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"FutureWarning: {old} moved to {new}" in result.stderr
    # and `python -m <old> --help` still runs the command
    result = subprocess.run([sys.executable, "-m", old, "--help"], capture_output=True, text=True, timeout=300,
                            env=ENV, cwd=REPO)
    assert result.returncode == 0 and "flags:" in result.stdout, result.stderr[-2000:]
