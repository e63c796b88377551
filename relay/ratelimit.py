"""Sliding-window rate limits per recipient and overall, against floods and SMS-pumping costs.

The ledger of sends lives in the store (table ``sends``), so the limits hold across restarts and
across every relay sharing the store: :meth:`RelayStore.rate_take` counts and records a send
atomically. What a limit does not allow is held by the dispatcher and summarised (one message per
recipient every ``summary_after_s``), never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

OVERALL = "*"  # the ledger key of the overall limit (no recipient may be called this)


@dataclass(frozen=True)
class Window:
    count: int
    per_s: float


@dataclass(frozen=True)
class Limits:
    per_recipient: Window | None
    overall: Window | None

    @property
    def active(self) -> bool:
        return self.per_recipient is not None or self.overall is not None

    @property
    def horizon_s(self) -> float:
        """How far back the ledger must reach (older rows can be purged)."""
        return max([w.per_s for w in (self.per_recipient, self.overall) if w is not None], default=0.0)
