"""Durable relay state behind one interface: seen event ids, alerts (sighting groups), the delivery
outbox, the rate-limit ledger, the review queue and its audit log, sequence gaps, history.

Two engines implement :class:`RelayStore`:

- :class:`~lookout.relay.sqlite_store.SqliteStore`, one file, the embedded default for one relay host;
- :class:`~lookout.relay.postgres_store.PostgresStore`, the shared store for a fleet of relays.

The rules of :meth:`RelayStore.ingest`, the same in both, in one transaction per batch:

1. **Idempotency**: an event id seen before is a redelivery; it is ignored.
2. **Suppression**: a person/device pair rejected in review is recorded, not alerted.
3. **Sighting dedup**: the same person (in the same gallery) seen within ``window_s`` of an alert's
   first sighting, by any device and through any relay, is folded into that alert (sighting count,
   devices) instead of making a new one.

A crash leaves either the whole batch recorded (and acknowledged afterwards) or nothing. A DynamoDB
store (conditional writes for the seen id and the dedup window) would be a third engine.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from lookout.relay.config import StoreSettings
from lookout.relay.postgres_store import PostgresStore
from lookout.relay.ratelimit import Limits
from lookout.relay.records import (
    Alert,
    AuditEntry,
    Delivery,
    DeliveryResult,
    Gap,
    Ingested,
    Intake,
    Sighting,
    StoreUnavailable,
)
from lookout.relay.sqlite_store import SqliteStore

__all__ = ["PostgresStore", "RelayStore", "SqliteStore", "StoreUnavailable", "open_store"]


class RelayStore(Protocol):
    """What the relay, ``lookout review`` and the console need from storage."""

    kind: str

    def sibling(self, *, durable: bool = True) -> RelayStore: ...
    def transaction(self) -> AbstractContextManager[None]: ...
    def ping(self) -> bool: ...
    def schema_version(self) -> int: ...
    def ingest(self, items: list[Intake], received_at: float, window_s: float) -> list[Ingested]: ...
    def claim_due(
        self, now: float, limit: int, owner: str, lease_s: float
    ) -> AbstractContextManager[list[Delivery]]: ...
    def claim_held(
        self, now: float, held_for_s: float, owner: str, lease_s: float
    ) -> AbstractContextManager[dict[str, list[Delivery]]]: ...
    def release_claims(self, owner: str) -> int: ...
    def alerts_by_id(self, ids: list[int]) -> dict[int, Alert]: ...
    def record(self, results: list[DeliveryResult]) -> None: ...
    def next_due_at(self) -> float | None: ...
    def mark_sent(self, delivery_id: int, now: float, provider_id: str) -> None: ...
    def mark_retry(self, delivery_id: int, next_at: float, error: str) -> None: ...
    def mark_failed(self, delivery_id: int, error: str) -> None: ...
    def hold(self, delivery_id: int, now: float) -> None: ...
    def mark_summarised(self, delivery_ids: list[int], now: float, provider_id: str) -> None: ...
    def rate_take(self, recipient: str, now: float, limits: Limits) -> int | None: ...
    def rate_release(self, ledger_id: int) -> None: ...
    def rate_record(self, recipient: str, now: float) -> None: ...
    def get_alert(self, alert_id: int) -> Alert | None: ...
    def alerts(self, status: str | None, limit: int) -> list[Alert]: ...
    def crop(self, alert_id: int) -> bytes | None: ...
    def drop_crop(self, alert_id: int) -> bool: ...
    def sightings(self, alert_id: int) -> list[Sighting]: ...
    def deliveries_of(self, alert_id: int) -> list[Delivery]: ...
    def confirm(self, alert_id: int, by: str, now: float, reason: str | None = None) -> int: ...
    def reject(self, alert_id: int, by: str, reason: str, now: float, suppress_until: float | None) -> int: ...
    def audit(
        self,
        actor: str,
        action: str,
        subject: str,
        reason: str | None = None,
        details: dict[str, object] | None = None,
        now: float | None = None,
    ) -> int: ...
    def audit_log(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        text: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[AuditEntry]: ...
    def count_audit(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        text: str | None = None,
    ) -> int: ...
    def last_match_by_device(self) -> dict[str, tuple[float, str]]: ...
    def find_gaps(self, now: float, grace_s: float, since: float) -> list[Gap]: ...
    def purge(self, now: float, retention_s: float, seen_ids_s: float, sends_s: float = 86400.0) -> dict[str, int]: ...
    def counts(self) -> dict[str, int]: ...
    def close(self) -> None: ...


def open_store(settings: StoreSettings, *, readonly: bool = False) -> RelayStore:
    """The store the config names, schema migrated to this version (PostgreSQL: pool opened)."""
    if settings.type == "postgresql":
        return PostgresStore.open(settings)
    return SqliteStore(settings.path, synchronous=settings.synchronous, readonly=readonly)
