"""`sideways-reproduce`: the papers' claims in miniature, with error bars over seeds, on this machine.

    sideways-reproduce [--claims motion,wide] [--seeds 3] [--out sideways_reproduce] [--runs_dir DIR]

Trains every arm of every claim once per seed (runs shared between claims are trained once;
an interrupted call resumes), then writes `miniature.md` (per claim: mean ± std per arm, each
check and the verdict: holds, contradicted, or not shown at this power with the seeds that would
decide it), `miniature.json` (every number) and `miniature_<claim>.png` into `--out`. `--list`
prints the claims; `--rejudge` judges the runs recorded in `--out` again without training.
"""

from __future__ import annotations

import os
import tempfile

from absl import flags

from sideways_tf.cli import common
from sideways_tf.reproduce import claims as claims_lib
from sideways_tf.reproduce import execute, study

FLAGS = flags.FLAGS
flags.DEFINE_list("claims", None, f"Claims to check (default: all): {', '.join(claims_lib.CLAIMS)}.")
flags.DEFINE_integer("seeds", 3, "Seeds per arm (at least 3 for error bars).")
# Not "experiments": run inside a clone, that would overwrite the repository's own results
# (regenerated with --out experiments).
flags.DEFINE_string("out", "sideways_reproduce", "Where miniature.md, miniature.json and the PNGs go (made if "
                    "missing).")
flags.DEFINE_string("runs_dir", None, "Where the runs go (default: sideways_reproduce_<size> in the temp folder); "
                    "kept, so that a second call resumes.")
flags.DEFINE_integer("workers", None, "Runs trained at the same time, one process and one thread each "
                     "(default: the CPU cores).")
flags.DEFINE_enum("size", "full", list(execute.SIZES), "full: the documented runs; tiny: 2 steps per run (a "
                  "check of the machinery, no science).")
flags.DEFINE_bool("list", False, "List the claims and exit.")
flags.DEFINE_bool("rejudge", False, "Judge the runs recorded in --out/miniature.json again with the current checks "
                  "(no training) and rewrite miniature.md.")

NAME_WIDTH = max(len(name) for name in claims_lib.CLAIMS) + 2
"""The claims' name column in what the command prints."""


def main(argv) -> None:
    del argv
    if FLAGS.list:
        for claim in claims_lib.CLAIMS.values():
            print(f"{claim.name:<{NAME_WIDTH}}{claim.title} ({claim.source}; {len(claim.arms)} arms)")
        return
    if FLAGS.rejudge:
        try:
            verdicts = study.rejudge(FLAGS.out)
        except (FileNotFoundError, ValueError) as error:
            common.fail("sideways-reproduce", f"--rejudge: {error}")
        for name, decided in verdicts.items():
            print(f"{name:<{NAME_WIDTH}}{decided}")
        print(f"\nresults: {os.path.join(FLAGS.out, study.RESULTS_MD)}")
        return
    names = FLAGS.claims or list(claims_lib.CLAIMS)
    try:
        claims_lib.get(names)
    except ValueError as error:
        common.fail("sideways-reproduce", f"--claims: {error}")
    if FLAGS.seeds < 1:
        common.fail("sideways-reproduce", f"--seeds={FLAGS.seeds}: must be at least 1 (3 or more for error bars).")
    workers = FLAGS.workers or os.cpu_count() or 1
    if workers < 1:
        common.fail("sideways-reproduce", f"--workers={workers}: must be a positive number of processes.")
    runs_dir = FLAGS.runs_dir or os.path.join(tempfile.gettempdir(), f"sideways_reproduce_{FLAGS.size}")
    verdicts = study.reproduce(names, FLAGS.seeds, FLAGS.out, runs_dir, workers, FLAGS.size)
    print()
    for name, decided in verdicts.items():
        print(f"{name:<{NAME_WIDTH}}{decided}")
    print(f"\nresults: {os.path.join(FLAGS.out, study.RESULTS_MD)} (and the PNGs beside it); runs: {runs_dir}")


def run_main() -> None:
    """Console-script entry point (`--help` shows this command's flags)."""
    common.run(main, __name__)


if __name__ == "__main__":
    run_main()
