"""What the relay stores and decides, independent of the storage engine.

Alert statuses: ``review`` (waiting for a person) → ``confirmed`` or ``rejected``;
``open`` (sent without review). Delivery states: ``waiting`` (alert in review) →
``pending`` → ``sent``; or ``held`` (rate limit) → ``summarised``; ``failed`` (gave up),
``cancelled`` (alert rejected). Times are UNIX seconds (UTC).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

from lookout.errors import LookoutError
from lookout.events import MatchEvent

ALERT_REVIEW, ALERT_OPEN, ALERT_CONFIRMED, ALERT_REJECTED = "review", "open", "confirmed", "rejected"
TERMINAL = ("sent", "failed", "cancelled", "summarised")


class StoreUnavailable(LookoutError):
    """The store cannot be reached or written now (connection lost, locked, disk full): not the data's
    fault. The work is retried; messages stay unacknowledged meanwhile."""


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


@dataclass(frozen=True)
class Intake:
    """One validated event ready for the store, with the plan its alert would get."""

    event: MatchEvent
    plan: AlertPlan
    payload: bytes | None = None  # the event as received, when it is valid JSON of exactly this event

    @property
    def gallery_id(self) -> str:
        return self.event.gallery_id or "default"

    @cached_property
    def event_id(self) -> str:
        return str(self.event.event_id)

    def stale_at(self, received_at: float) -> bool:
        return received_at >= self.event.expires_at.timestamp()

    def slim_json(self) -> str:
        """The event as kept with the alert: without the crop (stored once, beside it). The payload as
        received when it has no crop (no second serialisation)."""
        if self.payload is not None and self.event.crop_jpeg_b64 is None:
            return self.payload.decode("utf-8")
        return self.event.model_copy(update={"crop_jpeg_b64": None}).model_dump_json(exclude_none=True)


@dataclass(frozen=True)
class Alert:
    id: int
    gallery_id: str
    person_id: str
    status: str
    first_seen_at: float
    last_seen_at: float
    created_at: float
    sightings: int
    devices: list[str]
    best_score: float
    stale: bool
    event_json: str  # the alert's first event as stored (without its crop)
    has_crop: bool
    reviewed_by: str | None = None
    reviewed_at: float | None = None
    review_reason: str | None = None

    @cached_property
    def event(self) -> MatchEvent:
        """The first event, validated (parsed on first use: messages need only :attr:`event_doc`)."""
        return MatchEvent.model_validate_json(self.event_json)

    @cached_property
    def event_doc(self) -> dict[str, Any]:
        """The first event as plain JSON data, for messages."""
        return dict(json.loads(self.event_json))


@dataclass(frozen=True)
class Sighting:
    """One accepted event as recorded in history (the alert's first one and those folded into it)."""

    event_id: str
    device_id: str
    person_id: str
    score: float
    margin: float | None
    seen_at: float
    received_at: float
    outcome: str
    alert_id: int | None


@dataclass(frozen=True)
class Delivery:
    id: int
    alert_id: int
    recipient: str
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    last_error: str | None = None


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one delivery attempt, written with the others of its batch in one transaction.

    ``kind``: ``sent`` (at, provider_id), ``retry`` (at = next attempt, error), ``failed`` (error),
    ``held`` (at)."""

    kind: str
    delivery_id: int
    at: float = 0.0
    provider_id: str = ""
    error: str = ""


@dataclass(frozen=True)
class AuditEntry:
    """One row of the append-only audit log: who did what to which subject, when and why."""

    id: int
    at: float
    actor: str
    action: str
    subject: str
    reason: str | None = None
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditFilter:
    """Which audit rows to read: a time range, one actor, an action prefix (``review.``), and a text
    that must occur (case-insensitively) in the subject, the reason or the details."""

    since: float | None = None
    until: float | None = None
    actor: str | None = None
    action: str | None = None
    text: str | None = None

    def clauses(self, mark: str, find: str) -> tuple[str, list[object]]:
        """A WHERE clause for the audit table, with ``mark`` as the parameter placeholder and ``find`` the
        engine's substring function (``instr``, ``strpos``), and its values."""
        where: list[str] = ["1=1"]
        args: list[object] = []
        if self.since is not None:
            where.append(f"at >= {mark}")
            args.append(self.since)
        if self.until is not None:
            where.append(f"at < {mark}")
            args.append(self.until)
        if self.actor:
            where.append(f"actor = {mark}")
            args.append(self.actor)
        if self.action:
            where.append(f"substr(action, 1, {mark}) = {mark}")
            args += [len(self.action), self.action]
        if self.text:
            where.append(f"{find}(lower(subject || ' ' || coalesce(reason, '') || ' ' || details), {mark}) > 0")
            args.append(self.text.lower())
        return " AND ".join(where), args


@dataclass(frozen=True)
class Gap:
    """Sequence numbers of one device's stream that never reached the relay."""

    device_id: str
    stream: str
    first: int
    last: int

    @property
    def missing(self) -> int:
        return self.last - self.first + 1
