"""Errors that carry what went wrong with which input, for one-line user messages."""

from __future__ import annotations


class LookoutError(Exception):
    """Base class: a problem a user can act on. ``str(err)`` is a complete sentence."""


class InputError(LookoutError):
    """An input (file, URL, record) could not be used. Names the input and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ModelError(LookoutError):
    """A model is missing, corrupt, or does not match its manifest."""


class ConfigError(LookoutError):
    """A configuration value is missing or invalid."""
