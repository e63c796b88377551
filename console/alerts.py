"""The review desk: the relay's review queue as the console sees it.

Reads alerts, crops and folded sightings from the relay store, and decides through the relay's own
``ReviewQueue`` (the code ``lookout review confirm|reject`` runs), so a rejection cancels the deliveries and
suppresses the person at the alert's devices exactly as on the command line. Every decision is audited.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookout.console.audit import AuditEntry, AuditLog
from lookout.errors import InputError
from lookout.relay.config import load_config as load_relay_config
from lookout.relay.review import ReviewQueue
from lookout.relay.store import ALERT_REVIEW, Alert, SqliteStore


@dataclass(frozen=True)
class Sighting:
    device_id: str
    seen_at: float
    score: float
    outcome: str


def open_relay_store(relay_config: Path | None, store_path: Path | None) -> tuple[Any, float]:
    """The relay's store and its suppression time, from the relay's own config (as ``lookout review`` does)."""
    suppress_for_s = 86400.0
    if relay_config is not None:
        cfg = load_relay_config(relay_config)
        store_path = store_path or cfg.store.path
        suppress_for_s = cfg.review.suppress_for_s
    if store_path is None:
        raise InputError("console config", "set relay_config (the relay's YAML) or relay_store")
    return SqliteStore(store_path), suppress_for_s


class ReviewDesk:
    def __init__(self, store: Any, suppress_for_s: float, audit: AuditLog) -> None:
        self.store = store
        self.queue = ReviewQueue(store, suppress_for_s)
        self.audit = audit
        # The relay writes review audit rows itself (same transaction) once its store has the audit table.
        self._relay_audits = hasattr(store, "record_audit")

    def pending(self, limit: int = 200) -> list[Alert]:
        return self.queue.pending(limit)

    def recent(self, limit: int = 100) -> list[Alert]:
        return [a for a in self.queue.recent(limit) if a.status != ALERT_REVIEW]

    def count_pending(self) -> int:
        counter = getattr(self.store, "count_alerts", None)
        return int(counter(ALERT_REVIEW)) if counter else len(self.pending(10_000))

    def alert(self, alert_id: int) -> Alert:
        return self.queue.show(alert_id)

    def crop(self, alert_id: int) -> bytes | None:
        return self.store.crop(alert_id)

    def sightings(self, alert_id: int) -> list[Sighting]:
        folded = getattr(self.store, "sightings", None)
        if folded is not None:
            return [Sighting(s.device_id, s.seen_at, s.score, s.outcome) for s in folded(alert_id)]
        rows = self.store._x(  # until the relay store offers sightings(): its history table, read-only
            "SELECT device_id, seen_at, score, outcome FROM history WHERE alert_id=? ORDER BY seen_at", (alert_id,)
        ).fetchall()
        return [Sighting(r[0], r[1], r[2], r[3]) for r in rows]

    def last_match_by_device(self) -> dict[str, tuple[float, str]]:
        finder = getattr(self.store, "last_match_by_device", None)
        if finder is not None:
            return {k: (v[0], v[1]) for k, v in finder().items()}
        rows = self.store._x(
            "SELECT device_id, max(seen_at), person_id FROM history WHERE outcome IN ('alert','followup')"
            " GROUP BY device_id"
        ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def confirm(self, alert_id: int, by: str, note: str | None) -> int:
        alert = self.alert(alert_id)
        released = self.queue.confirm(alert_id, by)
        self._audit(by, "review.confirm", alert, note or None, {"released": released})
        return released

    def reject(self, alert_id: int, by: str, reason: str, suppress: bool) -> int:
        alert = self.alert(alert_id)
        cancelled = self.queue.reject(alert_id, reason, by, suppress=suppress)
        self._audit(by, "review.reject", alert, reason, {"cancelled": cancelled, "suppressed": suppress})
        return cancelled

    def _audit(self, by: str, action: str, alert: Alert, reason: str | None, extra: dict) -> None:
        if self._relay_audits:
            return
        detail = {"person_id": alert.person_id, "gallery_id": alert.gallery_id, "devices": alert.devices, **extra}
        self.audit.record(AuditEntry(time.time(), by, action, f"alert {alert.id}", reason, detail))
