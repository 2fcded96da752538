"""Deprecated alias of `sideways_tf.cli.common` (the commands' `--help` and error line), kept for one release."""

import warnings

from sideways_tf.cli.common import HELP_ARGS, command_help, fail, run  # noqa: F401

warnings.warn("sideways_tf.absl_cli moved to sideways_tf.cli.common; the old name goes in the next release.",
              FutureWarning, stacklevel=2)
