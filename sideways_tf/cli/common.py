"""Running an absl command with a `--help` that shows the command's own flags and exits 0."""

from __future__ import annotations

import sys
from typing import Callable

HELP_ARGS = ("-h", "--help", "--helpshort")


def command_help(module_name: str, flag_values=None) -> str:
    """The command's docstring (usage and examples), then its own flags, one entry each (from
    `flag_values`, default absl's global `FLAGS`)."""
    from absl import flags

    module = sys.modules[module_name]
    text = (flag_values or flags.FLAGS).module_help(module).strip()
    own_flags = text.split("\n", 1)[1] if "\n" in text else text  # drop the "module:" heading
    return f"{(module.__doc__ or '').strip()}\n\nflags:\n{own_flags}\n\n--helpfull lists every flag, absl's included."


def run(main: Callable, module_name: str, argv=None) -> None:
    """`absl.app.run(main)`, except that `-h`/`--help` prints `command_help` and exits 0."""
    from absl import app

    argv = list(sys.argv if argv is None else argv)
    if any(arg in HELP_ARGS for arg in argv[1:]):
        print(command_help(module_name))
        sys.exit(0)
    app.run(main, argv=argv)


def fail(command: str, message: str) -> None:
    """Prints `<command>: error: <message>` to stderr and exits with status 2 (a usage error)."""
    print(f"{command}: error: {message}", file=sys.stderr)
    sys.exit(2)
