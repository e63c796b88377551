"""Options every `lookout` command takes, before its subcommand (``lookout --log-format json run ...``).

Options that several parts' subcommands share (the model store, the face pipeline) are
in the core, ``lookout.face.options``, since a part may not import this package.
"""

from __future__ import annotations

import argparse


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="log lines as text or JSON")
