"""The `lookout` command. Each part registers its own subcommands.

A part is a module with ``register(commands)`` (adds top-level subcommands) and
optionally ``register_bench(benches)`` (adds ``lookout bench <name>``). Each
subcommand sets ``func=`` to a function taking the parsed args and returning an
exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lookout import __version__
from lookout.errors import LookoutError
from lookout.log import configure

# Modules that add subcommands, in the order they appear in --help.
PARTS = (
    "lookout.models.cli",
    "lookout.face.cli",
    "lookout.sync.cli",
    "lookout.device.cli",
    "lookout.relay.cli",
    "lookout.evaluation.cli",
    "lookout.packaging.cli",
    "lookout.console.cli",
    "lookout.demo",
)


def _load_parts() -> list:
    parts = []
    for name in PARTS:
        try:
            parts.append(importlib.import_module(name))
        except ModuleNotFoundError as err:
            if err.name != name:  # a real missing dependency, not a part not yet written
                raise
    return parts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookout",
        description="Edge-first face recognition: recognise enrolled people on the device, send only matches.",
    )
    parser.add_argument("--version", action="version", version=f"lookout {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="log lines as text or JSON")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench = commands.add_parser("bench", help="benchmarks that print figures measured on this machine")
    benches = bench.add_subparsers(dest="bench", metavar="WHAT", required=True)
    for part in _load_parts():
        part.register(commands)
        if hasattr(part, "register_bench"):
            part.register_bench(benches)
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
