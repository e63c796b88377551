"""The review queue, the audit log and the read side of the relay's store, written once for both engines.

:class:`ReviewSql` holds the SQL that SQLite and PostgreSQL run alike (alerts, sightings, review
decisions, the append-only audit log, delivery counts). Each engine keeps what really differs: its
connections and transactions, batch intake, how deliveries are claimed, rate limits, gap scans and
retention. An engine gives four primitives: :meth:`_rows` and :meth:`_run` (SQL written with ``?``
placeholders; the engine translates them), :meth:`transaction`, and how JSON goes in and comes out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from lookout.errors import InputError
from lookout.relay.records import (
    ALERT_CONFIRMED,
    ALERT_REJECTED,
    ALERT_REVIEW,
    Alert,
    AuditEntry,
    AuditFilter,
    Delivery,
    Sighting,
)

Row = Mapping[str, Any]


class ReviewSql:
    """Mixed into :class:`SqliteStore` and :class:`PostgresStore`; see the module docstring."""

    #: the database's substring function, for the audit log's text filter
    text_search_function = "instr"
    #: each device's most recent accepted sighting (the engines differ in how to say it)
    last_match_sql = "SELECT device_id, max(seen_at) AS seen_at, person_id FROM history GROUP BY device_id"
    #: the event id as text
    event_id_column = "event_id"

    # --- what an engine provides -----------------------------------------------------------

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        raise NotImplementedError

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Execute; the number of rows changed."""
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _json_param(self, value: object) -> object:
        """``value`` as the engine stores JSON."""
        return json.dumps(value)

    def _first(self, sql: str, args: tuple[Any, ...] = ()) -> Row | None:
        rows = self._rows(sql, args)
        return rows[0] if rows else None

    # --- alerts -----------------------------------------------------------------------------

    def get_alert(self, alert_id: int) -> Alert | None:
        row = self._first("SELECT * FROM alerts WHERE id=?", (alert_id,))
        return alert_from_row(row) if row else None

    def alerts(self, status: str | None, limit: int) -> list[Alert]:
        if status:
            rows = self._rows("SELECT * FROM alerts WHERE status=? ORDER BY id LIMIT ?", (status, limit))
        else:
            rows = self._rows("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (limit,))
        return [alert_from_row(r) for r in rows]

    def crop(self, alert_id: int) -> bytes | None:
        row = self._first("SELECT crop FROM alerts WHERE id=?", (alert_id,))
        return bytes(row["crop"]) if row and row["crop"] is not None else None

    def drop_crop(self, alert_id: int) -> bool:
        """Delete the alert's face crop (its person may no longer be alerted about: withdrawn, not in the
        gallery, or refused by the policy). True if there was one."""
        return self._run("UPDATE alerts SET crop=NULL WHERE id=? AND crop IS NOT NULL", (alert_id,)) > 0

    def sightings(self, alert_id: int) -> list[Sighting]:
        rows = self._rows(
            f"SELECT {self.event_id_column}, device_id, person_id, score, margin, seen_at, received_at, outcome,"
            " alert_id FROM history WHERE alert_id=? ORDER BY seen_at, id",
            (alert_id,),
        )
        return [Sighting(**dict(r)) for r in rows]

    def deliveries_of(self, alert_id: int) -> list[Delivery]:
        return [
            delivery_from_row(r)
            for r in self._rows("SELECT * FROM deliveries WHERE alert_id=? ORDER BY id", (alert_id,))
        ]

    def counts(self) -> dict[str, int]:
        rows = self._rows("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}

    def last_match_by_device(self) -> dict[str, tuple[float, str]]:
        """Each device's most recent accepted sighting: (seen_at, person_id), from history."""
        return {r["device_id"]: (r["seen_at"], r["person_id"]) for r in self._rows(self.last_match_sql)}

    # --- review -----------------------------------------------------------------------------

    def _decide(self, alert_id: int, status: str, by: str, reason: str | None, now: float) -> None:
        changed = self._run(
            "UPDATE alerts SET status=?, reviewed_by=?, reviewed_at=?, review_reason=? WHERE id=? AND status=?",
            (status, by, now, reason, alert_id, ALERT_REVIEW),
        )
        if changed != 1:
            alert = self.get_alert(alert_id)
            why = "no such alert" if alert is None else f"it is not awaiting review (status {alert.status})"
            raise InputError(f"alert {alert_id}", why)

    def confirm(self, alert_id: int, by: str, now: float, reason: str | None = None) -> int:
        """Release a reviewed alert for delivery (audited); returns the number of deliveries released."""
        with self.transaction():
            self._decide(alert_id, ALERT_CONFIRMED, by, reason, now)
            released = self._run(
                "UPDATE deliveries SET status='pending', next_attempt_at=? WHERE alert_id=? AND status='waiting'",
                (now, alert_id),
            )
            self.audit(by, "review.confirm", f"alert:{alert_id}", reason, {"released": released}, now)
        return released

    def reject(self, alert_id: int, by: str, reason: str, now: float, suppress_until: float | None) -> int:
        """Reject ("not this person", audited): nothing is sent; optionally suppress (person, device)."""
        with self.transaction():
            self._decide(alert_id, ALERT_REJECTED, by, reason, now)
            cancelled = self._run(
                "UPDATE deliveries SET status='cancelled' WHERE alert_id=? AND status='waiting'", (alert_id,)
            )
            alert = self.get_alert(alert_id)
            devices = alert.devices if alert and suppress_until is not None else []
            for device in devices:
                self._run(
                    "INSERT INTO suppressions(person_id, device_id, until, alert_id, reason) VALUES (?,?,?,?,?)"
                    " ON CONFLICT (person_id, device_id) DO UPDATE SET until=excluded.until,"
                    " alert_id=excluded.alert_id, reason=excluded.reason",
                    (alert.person_id if alert else "", device, suppress_until, alert_id, reason),
                )
            details = {"cancelled": cancelled, "suppressed_devices": devices, "suppressed_until": suppress_until}
            self.audit(by, "review.reject", f"alert:{alert_id}", reason, details, now)
        return cancelled

    # --- audit ------------------------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        subject: str,
        reason: str | None = None,
        details: dict[str, object] | None = None,
        now: float | None = None,
    ) -> int:
        """Append one audit row (the table refuses UPDATE and DELETE); its id."""
        row = self._first(
            "INSERT INTO audit(at, actor, action, subject, reason, details) VALUES (?,?,?,?,?,?) RETURNING id",
            (now if now is not None else time.time(), actor, action, subject, reason, self._json_param(details or {})),
        )
        return int(row["id"]) if row else 0

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
    ) -> list[AuditEntry]:
        """Newest first, filtered (see :class:`AuditFilter`), one page of ``limit`` from ``offset``."""
        where, args = AuditFilter(since, until, actor, action, text).clauses("?", self.text_search_function)
        rows = self._rows(
            f"SELECT * FROM audit WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?", (*args, limit, offset)
        )
        return [
            AuditEntry(r["id"], r["at"], r["actor"], r["action"], r["subject"], r["reason"], from_json(r["details"]))
            for r in rows
        ]

    def count_audit(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        text: str | None = None,
    ) -> int:
        where, args = AuditFilter(since, until, actor, action, text).clauses("?", self.text_search_function)
        row = self._first(f"SELECT count(*) AS n FROM audit WHERE {where}", tuple(args))
        return int(row["n"]) if row else 0


def from_json(value: Any) -> Any:
    """A JSON column's value: SQLite hands back text, PostgreSQL's jsonb the decoded value."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def alert_from_row(row: Row) -> Alert:
    return Alert(
        id=row["id"],
        gallery_id=row["gallery_id"],
        person_id=row["person_id"],
        status=row["status"],
        first_seen_at=row["first_seen_at"],
        last_seen_at=row["last_seen_at"],
        created_at=row["created_at"],
        sightings=row["sightings"],
        devices=list(from_json(row["devices"])),
        best_score=row["best_score"],
        stale=bool(row["stale"]),
        event_json=row["event"],
        has_crop=row["crop"] is not None,
        reviewed_by=row["reviewed_by"],
        reviewed_at=row["reviewed_at"],
        review_reason=row["review_reason"],
    )


def delivery_from_row(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        alert_id=row["alert_id"],
        recipient=row["recipient"],
        status=row["status"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
    )


def by_recipient(deliveries: Iterator[Delivery] | list[Delivery]) -> dict[str, list[Delivery]]:
    """Deliveries grouped by recipient, each group in id order."""
    out: dict[str, list[Delivery]] = {}
    for d in sorted(deliveries, key=lambda d: d.id):
        out.setdefault(d.recipient, []).append(d)
    return out
