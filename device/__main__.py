"""`python -m lookout.device`: the device's commands alone (`run`, `events tail`, `video make`).

The same commands as ``lookout run`` etc., for a device that runs nothing else: the `lookout`
command imports every part (the cloud's gallery tools, the relay, evaluation) so that all of its
commands exist, which costs a device about 15 MB of resident memory it never uses
(docs/benchmarks.md). Greengrass components start ``lookout.greengrass.launch``, as lean.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lookout import __version__
from lookout.device import cli
from lookout.errors import LookoutError
from lookout.log import configure


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lookout.device", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--version", action="version", version=f"lookout {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="log lines as text or JSON")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(args.log_level, args.log_format)
    try:
        return int(args.func(args) or 0)
    except LookoutError as err:
        print(f"lookout: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
