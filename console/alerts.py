"""The review desk: the relay's review queue as the console sees it.

Reads alerts, crops and folded sightings from the relay store (SQLite or PostgreSQL, opened from the relay's own
config as ``lookout review`` opens it), and decides through the relay's ``ReviewQueue``, the one code path for
decisions: a rejection cancels the deliveries and suppresses the person at the alert's devices exactly as on the
command line, and the store writes the audit row in the same transaction as the decision.
"""

from __future__ import annotations

from pathlib import Path

from lookout.errors import InputError
from lookout.relay.config import StoreSettings
from lookout.relay.config import load_config as load_relay_config
from lookout.relay.records import ALERT_REVIEW, Alert, Sighting
from lookout.relay.review import ReviewQueue
from lookout.relay.store import RelayStore, open_store


def open_relay_store(relay_config: Path | None, store_path: Path | None) -> tuple[RelayStore, float]:
    """The relay's store and its suppression time, from the relay's own config (as ``lookout review`` does)."""
    if relay_config is not None:
        cfg = load_relay_config(relay_config)
        settings = cfg.store if store_path is None else cfg.store.model_copy(update={"path": store_path})
        return open_store(settings), cfg.review.suppress_for_s
    if store_path is None:
        raise InputError("console config", "set relay_config (the relay's YAML) or relay_store")
    return open_store(StoreSettings(path=store_path)), 86400.0


class ReviewDesk:
    def __init__(self, store: RelayStore, suppress_for_s: float) -> None:
        self.store = store
        self.queue = ReviewQueue(store, suppress_for_s)

    def pending(self, limit: int = 200) -> list[Alert]:
        return self.queue.pending(limit)

    def recent(self, limit: int = 100) -> list[Alert]:
        return [a for a in self.queue.recent(limit) if a.status != ALERT_REVIEW]

    def count_pending(self) -> int:
        return len(self.pending(10_000))

    def alert(self, alert_id: int) -> Alert:
        return self.queue.show(alert_id)

    def crop(self, alert_id: int) -> bytes | None:
        return self.store.crop(alert_id)

    def sightings(self, alert_id: int) -> list[Sighting]:
        return self.queue.sightings(alert_id)

    def last_match_by_device(self) -> dict[str, tuple[float, str]]:
        """Each device's most recent accepted sighting (seen_at, person id), from the relay's history."""
        return self.store.last_match_by_device()

    def confirm(self, alert_id: int, by: str, note: str | None) -> int:
        return self.queue.confirm(alert_id, by, note or None)

    def reject(self, alert_id: int, by: str, reason: str, suppress: bool) -> int:
        return self.queue.reject(alert_id, reason, by, suppress=suppress)

    def close(self) -> None:
        self.store.close()
