"""Turning an accepted event into at most one alert per person per window.

1. **Idempotency**: an event id seen before is a redelivery; it is ignored.
2. **Suppression**: a person/device pair rejected in review is recorded, not alerted.
3. **Sighting dedup**: the same person (in the same gallery) seen within ``window_s``
   of an alert's first sighting, by any device, is folded into that alert
   (sighting count, devices) instead of making a new one.

All of it happens in one store transaction, so a crash leaves either the whole
event recorded (and acknowledged afterwards) or nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from lookout.events import MatchEvent
from lookout.relay.store import ALERT_OPEN, ALERT_REVIEW, RelayStore


class Outcome(str, Enum):
    DUPLICATE = "duplicate"
    SUPPRESSED = "suppressed"
    FOLLOW_UP = "followup"
    NEW_ALERT = "alert"


@dataclass(frozen=True)
class Ingested:
    outcome: Outcome
    alert_id: int | None = None
    review: bool = False


@dataclass(frozen=True)
class AlertPlan:
    """What a new alert needs from configuration: review or not, and who gets it."""

    review: bool
    recipients: list[str]


def ingest(
    store: RelayStore,
    event: MatchEvent,
    *,
    received_at: float,
    window_s: float,
    plan: Callable[[MatchEvent], AlertPlan],
) -> Ingested:
    """Record ``event`` and decide its outcome, atomically."""
    gallery = event.gallery_id or "default"
    with store.transaction():
        if not store.mark_seen(str(event.event_id), received_at):
            return Ingested(Outcome.DUPLICATE)
        if store.is_suppressed(event.person_id, event.device_id, received_at):
            store.add_history(event, received_at, Outcome.SUPPRESSED.value, None)
            return Ingested(Outcome.SUPPRESSED)
        existing = store.find_alert(gallery, event.person_id, event.seen_at.timestamp(), window_s)
        if existing is not None:
            store.add_sighting(existing.id, event)
            store.add_history(event, received_at, Outcome.FOLLOW_UP.value, existing.id)
            return Ingested(Outcome.FOLLOW_UP, existing.id, existing.status == ALERT_REVIEW)
        decided = plan(event)
        status = ALERT_REVIEW if decided.review else ALERT_OPEN
        stale = received_at >= event.expires_at.timestamp()
        alert_id = store.create_alert(event, gallery, status, decided.recipients, stale, received_at)
        store.add_history(event, received_at, Outcome.NEW_ALERT.value, alert_id)
        return Ingested(Outcome.NEW_ALERT, alert_id, decided.review)
