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

from lookout.command import command_parser, run_command
from lookout.device import cli


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("python -m lookout.device", __doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
