"""A run's folder: resumed by the same configuration, reported when finished, another refused."""

import dataclasses
import json

import pytest

from sideways_tf.training import experiments, run_dir

pytestmark = pytest.mark.backend_independent("files and configs")

CONFIG = experiments.get("quickstart")


def test_a_fresh_folder_records_the_configuration(tmp_path):
    assert run_dir.claim(str(tmp_path / "run"), CONFIG) is None
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["mode"] == "skip_sideways" and "description" not in saved
    assert run_dir.claim(str(tmp_path / "run"), CONFIG) is None  # same configuration: resume


def test_a_finished_run_is_reported_not_trained_again(tmp_path):
    run_dir.claim(str(tmp_path), CONFIG)
    (tmp_path / "results.json").write_text(json.dumps({"evaluation": {"accuracy": 0.5}}))
    assert run_dir.claim(str(tmp_path), CONFIG) == {"evaluation": {"accuracy": 0.5}}
    assert run_dir.claim(str(tmp_path), CONFIG, overwrite=True) is None
    assert not (tmp_path / "results.json").exists()


def test_another_configuration_is_refused_naming_the_keys(tmp_path):
    run_dir.claim(str(tmp_path), CONFIG)
    other = dataclasses.replace(CONFIG, mode="sideways", learning_rate=0.1)
    with pytest.raises(ValueError, match=rf"another configuration \(learning_rate: {CONFIG.learning_rate!r} -> 0.1; "
                                         r"mode: 'skip_sideways' -> 'sideways'\).*--overwrite"):
        run_dir.claim(str(tmp_path), other)
    assert run_dir.claim(str(tmp_path), other, overwrite=True) is None


def test_an_unrecorded_or_unreadable_run_is_refused(tmp_path):
    (tmp_path / "backup").mkdir()
    with pytest.raises(ValueError, match="configuration was not recorded"):
        run_dir.claim(str(tmp_path), CONFIG)
    (tmp_path / "config.json").write_text("{truncated")
    with pytest.raises(ValueError, match=r"config.json is unreadable"):
        run_dir.claim(str(tmp_path), CONFIG)
