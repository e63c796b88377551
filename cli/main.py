"""The `lookout` command: every part's subcommands, composed here, at the top of the layering.

Each part's ``cli`` module has ``register(commands)`` (adds top-level subcommands) and
optionally ``register_bench(benches)`` (adds ``lookout bench <name>``); each subcommand
sets ``func=`` to a function taking the parsed args and returning an exit code. Every
part is imported by name below: a part that is missing or fails to import stops the
command with its own error, never silently drops its subcommands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lookout.cli import face
from lookout.command import command_parser, run_command
from lookout.console import cli as console
from lookout.demo import device_bench
from lookout.demo import run as demo
from lookout.device import cli as device
from lookout.evaluation import cli as evaluation
from lookout.greengrass import cli as greengrass
from lookout.models import cli as models
from lookout.relay import cli as relay
from lookout.sync import cli as sync


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "lookout", "Edge-first face recognition: recognise enrolled people on the device, send only matches."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench = commands.add_parser("bench", help="benchmarks that print figures measured on this machine")
    benches = bench.add_subparsers(dest="bench", metavar="WHAT", required=True)
    # In the order they appear in --help.
    model_actions = models.register(commands)
    evaluation.register_quantize(model_actions)  # `lookout models quantize` measures on faces
    face.register(commands)
    sync.register(commands)
    device.register(commands)
    relay.register(commands)
    evaluation.register(commands)
    greengrass.register(commands)
    console.register(commands)
    demo.register(commands)
    for register_bench in (
        face.register_bench,
        sync.register_bench,
        device_bench.register_bench,
        relay.register_bench,
        evaluation.register_bench,
    ):
        register_bench(benches)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
