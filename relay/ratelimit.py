"""Sliding-window rate limits per recipient and overall, against floods and SMS-pumping costs.

A send is allowed only if both the recipient's window and the overall window have
room. What is not allowed is held by the caller (and later summarised), never dropped.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    count: int
    per_s: float


class RateLimiter:
    def __init__(self, per_recipient: Window | None, overall: Window | None) -> None:
        self.per_recipient = per_recipient
        self.overall = overall
        self._sent: dict[str, deque[float]] = defaultdict(deque)
        self._all: deque[float] = deque()

    @staticmethod
    def _room(times: deque[float], window: Window | None, now: float) -> bool:
        if window is None:
            return True
        while times and times[0] <= now - window.per_s:
            times.popleft()
        return len(times) < window.count

    def allows(self, recipient: str, now: float) -> bool:
        return self._room(self._sent[recipient], self.per_recipient, now) and self._room(self._all, self.overall, now)

    def record(self, recipient: str, now: float) -> None:
        if self.per_recipient is not None:
            self._sent[recipient].append(now)
        if self.overall is not None:
            self._all.append(now)

    def seed(self, sent: list[tuple[str, float]]) -> None:
        """Restore recent sends (from the store) after a restart."""
        for recipient, at in sent:
            self.record(recipient, at)
