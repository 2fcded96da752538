"""Deprecated alias of `sideways_tf.cli.quickstart` (`sideways-quickstart`), kept for one release.

`python -m sideways_tf.quickstart` still runs the command, with a warning.
"""

import warnings

from sideways_tf.cli.quickstart import *  # noqa: F403
from sideways_tf.cli.quickstart import main, run_main  # noqa: F401

warnings.warn("sideways_tf.quickstart moved to sideways_tf.cli.quickstart; the old name goes in the "
              "next release.", FutureWarning, stacklevel=2)

if __name__ == "__main__":
    run_main()
