"""A run's folder belongs to one configuration: resumed only by the same, never mixed with another.

`model_dir/config.json` records the configuration a run was started with. Starting again in the
same folder resumes the run (from its backup) when the configuration is the same, says it is
finished when `results.json` is there, and refuses another configuration, naming the keys that
differ. `overwrite=True` clears the folder's run first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Optional

from sideways_tf.training.config import Config

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
BACKUP_DIR = "backup"
IGNORED_KEYS = ("description",)


def as_record(config: Config) -> dict:
    """The configuration as stored in `config.json` (JSON types: tuples become lists)."""
    record = {k: v for k, v in dataclasses.asdict(config).items() if k not in IGNORED_KEYS}
    return json.loads(json.dumps(record))


def differences(saved: dict, current: dict) -> list[str]:
    """`key: saved -> current` for every key whose value differs (or exists in one only)."""
    def shown(record: dict, key: str) -> str:
        return repr(record[key]) if key in record else "absent"

    return [f"{key}: {shown(saved, key)} -> {shown(current, key)}"
            for key in sorted(set(saved) | set(current)) if shown(saved, key) != shown(current, key)]


def claim(model_dir: str, config: Config, overwrite: bool = False) -> Optional[dict]:
    """Makes `model_dir` the folder of a run of `config`; returns its results if that run already finished.

    Args:
      model_dir: the run's folder (created if needed).
      config: the configuration about to be trained.
      overwrite: clear a previous run (backup, results, recorded configuration) first.

    Returns:
      The finished run's results (`results.json`) when the folder holds a finished run of the
      same configuration, else None (train: afresh, or resuming from the backup).

    Raises:
      ValueError: the folder holds a run of another configuration (naming the keys that
        differ), or an unreadable `config.json`.
    """
    os.makedirs(model_dir, exist_ok=True)
    config_path, results_path = os.path.join(model_dir, CONFIG_FILE), os.path.join(model_dir, RESULTS_FILE)
    if overwrite:
        shutil.rmtree(os.path.join(model_dir, BACKUP_DIR), ignore_errors=True)
        for path in (config_path, results_path):
            if os.path.exists(path):
                os.remove(path)
    if os.path.exists(config_path):
        return finished(model_dir, config)
    if os.path.exists(results_path) or os.path.isdir(os.path.join(model_dir, BACKUP_DIR)):
        raise ValueError(f"{model_dir} holds a run whose configuration was not recorded (no {CONFIG_FILE}); use "
                         f"another --model_dir, or --overwrite to replace it.")
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(as_record(config), f, indent=1)
    return None


def finished(model_dir: str, config: Config) -> Optional[dict]:
    """Reads, without writing: the results of a finished run of `config` in `model_dir`, else None.

    Raises:
      ValueError: the folder's `config.json` is unreadable or records another configuration.
    """
    config_path, results_path = os.path.join(model_dir, CONFIG_FILE), os.path.join(model_dir, RESULTS_FILE)
    if not os.path.exists(config_path):
        return None
    try:
        with open(config_path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path} is unreadable ({error}); delete it or pass --overwrite to start "
                         f"the run afresh.") from error
    changed = differences(saved, as_record(config))
    if changed:
        raise ValueError(f"{model_dir} holds a run of another configuration ({'; '.join(changed)}); use "
                         f"another --model_dir, or --overwrite to replace that run.")
    if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
            return json.load(f)
    return None

