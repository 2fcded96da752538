"""Deprecated alias of `sideways_tf.cli.reproduce` (`sideways-reproduce`), kept for one release.

`python -m sideways_tf.reproduce.cli` still runs the command, with a warning.
"""

import warnings

from sideways_tf.cli.reproduce import *  # noqa: F403
from sideways_tf.cli.reproduce import main, run_main  # noqa: F401

warnings.warn("sideways_tf.reproduce.cli moved to sideways_tf.cli.reproduce; the old name goes in the "
              "next release.", FutureWarning, stacklevel=2)

if __name__ == "__main__":
    run_main()
