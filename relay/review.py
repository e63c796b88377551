"""Human review: alerts of review-mode galleries wait here until a person decides.

The one code path for decisions, used by ``lookout review`` and the web console; every decision is
written to the store's append-only audit log in the same transaction. ``confirm`` releases the alert's deliveries (the running relay sends them within a
second); ``reject`` ("not this person") cancels them, records who and why, and
suppresses the same person at the same device(s) for ``review.suppress_for_s``.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from pathlib import Path

from lookout.errors import InputError
from lookout.events import format_utc
from lookout.log import get_logger
from lookout.relay.records import ALERT_REVIEW, Alert, AuditEntry, Delivery, Sighting
from lookout.relay.store import RelayStore

log = get_logger(__name__)


def reviewer(name: str | None) -> str:
    return name or getpass.getuser()


@dataclass(frozen=True)
class ReviewQueue:
    store: RelayStore
    suppress_for_s: float

    def __enter__(self) -> ReviewQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()

    def pending(self, limit: int = 100) -> list[Alert]:
        return self.store.alerts(ALERT_REVIEW, limit)

    def recent(self, limit: int = 100) -> list[Alert]:
        return self.store.alerts(None, limit)

    def show(self, alert_id: int) -> Alert:
        alert = self.store.get_alert(alert_id)
        if alert is None:
            raise InputError(f"alert {alert_id}", "no such alert")
        return alert

    def sightings(self, alert_id: int) -> list[Sighting]:
        """The events folded into an alert (its first included), oldest first."""
        return self.store.sightings(alert_id)

    def deliveries(self, alert_id: int) -> list[Delivery]:
        return self.store.deliveries_of(alert_id)

    def confirm(self, alert_id: int, by: str | None = None, reason: str | None = None) -> int:
        who = reviewer(by)
        released = self.store.confirm(alert_id, who, time.time(), reason)
        log.info("review.confirmed", alert_id=alert_id, by=who, deliveries=released)
        return released

    def reject(self, alert_id: int, reason: str, by: str | None = None, suppress: bool = True) -> int:
        if not reason.strip():
            raise InputError(f"alert {alert_id}", "a rejection needs a reason (--reason)")
        who, now = reviewer(by), time.time()
        until = now + self.suppress_for_s if suppress and self.suppress_for_s > 0 else None
        cancelled = self.store.reject(alert_id, who, reason, now, until)
        log.info(
            "review.rejected",
            alert_id=alert_id,
            by=who,
            reason=reason,
            cancelled=cancelled,
            suppressed_until=until and _clock(until),
        )
        return cancelled

    def save_crop(self, alert_id: int, path: Path) -> bool:
        data = self.store.crop(alert_id)
        if data is None:
            return False
        path.write_bytes(data)
        return True


def _clock(ts: float) -> str:
    return format_utc(ts)


def format_alert(alert: Alert) -> str:
    """One line per alert for ``lookout review list``."""
    ev = alert.event
    where = ev.device_name or ev.device_id
    more = f" +{alert.sightings - 1} sightings" if alert.sightings > 1 else ""
    late = " LATE" if alert.stale else ""
    crop = " [crop]" if alert.has_crop else ""
    return (
        f"#{alert.id:<5} {alert.status:8s} {_clock(alert.first_seen_at)}  person={alert.person_id}"
        f"  at={where}  score={alert.best_score:.2f}{more}{late}{crop}"
    )


def format_detail(alert: Alert, deliveries: list) -> str:
    lines = [
        format_alert(alert),
        f"  devices: {', '.join(alert.devices)}",
        f"  gallery: {alert.gallery_id}",
        f"  event: {alert.event.event_id} model={alert.event.model.name} bundle={alert.event.bundle_version}",
    ]
    if alert.reviewed_by:
        lines.append(
            f"  reviewed by {alert.reviewed_by} at {_clock(alert.reviewed_at) if alert.reviewed_at else '?'}"
            + (f": {alert.review_reason}" if alert.review_reason else "")
        )
    for d in deliveries:
        lines.append(
            f"  delivery {d.id} to {d.recipient}: {d.status} (attempts {d.attempts})"
            + (f" last error: {d.last_error}" if d.last_error else "")
        )
    return "\n".join(lines)


def format_audit(entry: AuditEntry) -> str:
    """One line per audit entry for ``lookout review audit``."""
    why = f"  reason: {entry.reason}" if entry.reason else ""
    return f"{_clock(entry.at)}  {entry.actor:12s} {entry.action:16s} {entry.subject}{why}"
