"""The notifier interface: send one message, return the provider's id, or raise DeliveryError."""

from __future__ import annotations

from typing import Protocol

from lookout.errors import LookoutError
from lookout.relay.message import Outgoing


class DeliveryError(LookoutError):
    """A send failed. ``retryable`` says whether trying again later can help."""

    def __init__(self, notifier: str, reason: str, *, retryable: bool) -> None:
        super().__init__(f"{notifier}: {reason}")
        self.retryable = retryable


class Notifier(Protocol):
    name: str

    def send(self, message: Outgoing) -> str:
        """Deliver ``message``; return the provider's message id. Raise DeliveryError on failure."""
        ...

    def close(self) -> None: ...


def retryable_http(status: int) -> bool:
    """HTTP statuses worth retrying: timeouts, rate limiting, server errors."""
    return status in (408, 425, 429) or status >= 500
