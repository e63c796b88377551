"""The `lookout` command: composes every part's subcommands (see ``main``)."""

from lookout.cli.main import main

__all__ = ["main"]
