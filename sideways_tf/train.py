"""Deprecated alias of `sideways_tf.cli.train` (`sideways-train`), kept for one release.

`python -m sideways_tf.train` still runs the command, with a warning.
"""

import warnings

from sideways_tf.cli.train import *  # noqa: F403
from sideways_tf.cli.train import main, run_main  # noqa: F401

warnings.warn("sideways_tf.train moved to sideways_tf.cli.train (or run `sideways-train`); the old name goes in the "
              "next release.", FutureWarning, stacklevel=2)

if __name__ == "__main__":
    run_main()
