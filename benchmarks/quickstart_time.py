"""The quickstart's wall time on this machine: `sideways-quickstart` run several times, each in a fresh process.

    python -m benchmarks.quickstart_time [--runs 3] [--out DIR]

Each run is `python -m sideways_tf.cli.quickstart --verbose 0` in a new process (both rules train at
the same time, one process per core, as a user's run does); its wall time, both rules' held-out
accuracy (mean of the last epochs) and minutes are recorded. Prints JSON with the CPU it ran on,
then a table with the median. The README's figure comes from here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.report import report


def cpu_name() -> str:
    """The CPU's model name and core count (from /proc/cpuinfo where there is one)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = next(line for line in lines if line.startswith("flags")).split()
        name += ", AVX-512" if "avx512f" in flags else (", AVX2" if "avx2" in flags else "")
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


def one_run(folder: str) -> dict:
    """One quickstart in a fresh process: its wall time and both rules' rows."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sideways_tf.cli.quickstart", "--model_dir", folder, "--verbose", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    with open(os.path.join(folder, "quickstart.json")) as f:
        rows = {row["mode"]: row for row in json.load(f)}
    return {"wall_s": seconds, **{f"{mode}_accuracy": row["accuracy"] for mode, row in rows.items()},
            **{f"{mode}_minutes": row["minutes"] for mode, row in rows.items()},
            "chance": rows["sideways"]["chance"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1; got {args.runs}.")
    root = args.out or tempfile.mkdtemp(prefix="quickstart_time_")
    rows = []
    for i in range(args.runs):
        rows.append({"run": i + 1, **one_run(os.path.join(root, f"run{i + 1}"))})
        print(f"run {i + 1}: {rows[-1]['wall_s']:.0f} s", file=sys.stderr, flush=True)
    summary = {"cpu": cpu_name(), "python": platform.python_version(),
               "median_wall_s": statistics.median(r["wall_s"] for r in rows)}
    report("quickstart_time", rows, ["run", "wall_s", "sideways_accuracy", "skip_sideways_accuracy", "chance",
                                     "sideways_minutes", "skip_sideways_minutes"], summary)


if __name__ == "__main__":
    main()
