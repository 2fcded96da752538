"""Deprecated alias of `sideways_tf.cli.stream` (`sideways-stream`), kept for one release.

`python -m sideways_tf.stream` still runs the command, with a warning.
"""

import warnings

from sideways_tf.cli.stream import *  # noqa: F403
from sideways_tf.cli.stream import main, run_main  # noqa: F401

warnings.warn("sideways_tf.stream moved to sideways_tf.cli.stream (or run `sideways-stream`); the old name goes in the "
              "next release.", FutureWarning, stacklevel=2)

if __name__ == "__main__":
    run_main()
