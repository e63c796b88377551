"""Per-person cooldown: at most one event per person per window on this device.

Times come from the runtime's clock (wall time, or video time when replaying), so the
window is the same whether a person stands in view for three minutes live or in a
three-minute recording processed in seconds.
"""

from __future__ import annotations


class Cooldown:
    def __init__(self, seconds: float = 60.0) -> None:
        self.seconds = seconds
        self._last: dict[str, float] = {}

    def ready(self, person_id: str, now: float) -> bool:
        last = self._last.get(person_id)
        return last is None or now - last >= self.seconds

    def remaining(self, person_id: str, now: float) -> float:
        last = self._last.get(person_id)
        return 0.0 if last is None else max(0.0, self.seconds - (now - last))

    def mark(self, person_id: str, now: float) -> None:
        self._last[person_id] = now
        if len(self._last) > 10_000:  # forget long-expired entries
            self._last = {p: t for p, t in self._last.items() if now - t < self.seconds}
