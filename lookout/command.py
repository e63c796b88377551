"""What every Lookout command line shares: the parser class, the options before the subcommand,
and how a command runs and ends (exit codes).

Used by `lookout` (``lookout.cli``, every part) and `python -m lookout.device` (the device alone):
both parse alike, log alike and end alike.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from lookout import __version__
from lookout.errors import LookoutError
from lookout.log import configure

EXIT_FAILED = 1  # the system refused (a file or folder that cannot be made or read): one line saying which
EXIT_REFUSED = 2  # a LookoutError: the input or the config was refused, with one line saying why
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """No abbreviated options, here and in every subcommand (subparsers are made of this class):
    ``lookout run --device CPU`` was once taken as ``--device-id CPU``. A misspelt option is an error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def command_parser(prog: str, description: str) -> Parser:
    """A top-level parser with ``--version``, ``--log-level`` and ``--log-format``."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"lookout {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="log lines as text or JSON")
    return parser


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, configure logging, run the chosen subcommand's ``func``. A refusal (LookoutError) or a file
    or folder the system refuses (OSError: ``--out /proc/x``) is one line on stderr naming it, no traceback
    (``--log-level debug`` shows the traceback of an OSError)."""
    args = parser.parse_args(argv)
    configure(args.log_level, args.log_format)
    try:
        return int(args.func(args) or 0)
    except LookoutError as err:
        print(f"lookout: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as err:
        if args.log_level == "debug":
            raise  # the traceback, for whoever asked for detail
        where = f"{err.filename}: " if err.filename is not None else ""
        print(f"lookout: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
