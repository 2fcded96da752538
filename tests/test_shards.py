"""`--shard K/N` (tests/conftest.py): the suite in shares of its files, for the GPU machines'
10-minute calls (`tests/gpu/run.sh --shard K/N`)."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT, subprocess_env

pytestmark = pytest.mark.backend_independent("pytest's collection of the suite's files")

FILES = ["tests/core/test_schedule.py", "tests/core/test_targets.py", "tests/core/test_text_table.py"]


def _collect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", *args,
                           *FILES], capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=ROOT)


def _files(result: subprocess.CompletedProcess) -> set:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}


def test_shards_split_the_files_between_them():
    shares = [_files(_collect("--shard", f"{k}/2")) for k in (1, 2)]
    assert shares == [set(FILES[0::2]), set(FILES[1::2])]  # every other file of the sorted list
    assert _files(_collect()) == set(FILES)


def test_a_shard_out_of_range_is_refused():
    result = _collect("--shard", "3/2")
    assert result.returncode != 0
    assert "--shard takes K/N with 1 <= K <= N (e.g. --shard 1/3); got '3/2'" in result.stdout + result.stderr
