"""Durable relay state: seen event ids, alerts (sighting groups), the delivery outbox,
the review queue, suppressions and event history with retention.

:class:`RelayStore` is the interface the relay uses; :class:`SqliteStore` is the
default (one file, WAL mode). A fleet sharing state would implement the same
methods on PostgreSQL or DynamoDB. Times are UNIX seconds (UTC).

Delivery states: ``waiting`` (alert in review) → ``pending`` → ``sent``; or ``held``
(rate limit) → ``summarised``; ``failed`` (gave up), ``cancelled`` (alert rejected).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lookout.errors import InputError
from lookout.events import MatchEvent
from lookout.log import get_logger

log = get_logger(__name__)

ALERT_REVIEW, ALERT_OPEN, ALERT_REJECTED = "review", "open", "rejected"
TERMINAL = ("sent", "failed", "cancelled", "summarised")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_events (
    event_id TEXT PRIMARY KEY,
    received_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_events_age ON seen_events(received_at);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    gallery_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    status TEXT NOT NULL,
    first_seen_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    created_at REAL NOT NULL,
    sightings INTEGER NOT NULL DEFAULT 1,
    devices TEXT NOT NULL,
    best_score REAL NOT NULL,
    stale INTEGER NOT NULL DEFAULT 0,
    event TEXT NOT NULL,
    crop BLOB,
    reviewed_by TEXT,
    reviewed_at REAL,
    review_reason TEXT
);
CREATE INDEX IF NOT EXISTS alerts_person ON alerts(gallery_id, person_id, first_seen_at);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    sent_at REAL,
    last_error TEXT,
    provider_id TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_alert ON deliveries(alert_id);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    score REAL NOT NULL,
    seen_at REAL NOT NULL,
    received_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    alert_id INTEGER
);
CREATE INDEX IF NOT EXISTS history_age ON history(received_at);
CREATE TABLE IF NOT EXISTS suppressions (
    person_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    until REAL NOT NULL,
    alert_id INTEGER,
    reason TEXT,
    PRIMARY KEY (person_id, device_id)
);
"""


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
    event: MatchEvent
    has_crop: bool
    reviewed_by: str | None = None
    reviewed_at: float | None = None
    review_reason: str | None = None


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


class RelayStore(Protocol):
    """What the relay needs from storage. Methods inside ``transaction()`` commit together."""

    def transaction(self) -> AbstractContextManager[None]: ...
    def mark_seen(self, event_id: str, received_at: float) -> bool: ...
    def is_suppressed(self, person_id: str, device_id: str, now: float) -> bool: ...
    def find_alert(self, gallery_id: str, person_id: str, seen_at: float, window_s: float) -> Alert | None: ...
    def create_alert(
        self, event: MatchEvent, gallery_id: str, status: str, recipients: list[str], stale: bool, now: float
    ) -> int: ...
    def add_sighting(self, alert_id: int, event: MatchEvent) -> None: ...
    def add_history(self, event: MatchEvent, received_at: float, outcome: str, alert_id: int | None) -> None: ...
    def due_deliveries(self, now: float, limit: int) -> list[Delivery]: ...
    def next_due_at(self) -> float | None: ...
    def mark_sent(self, delivery_id: int, now: float, provider_id: str) -> None: ...
    def mark_retry(self, delivery_id: int, next_at: float, error: str) -> None: ...
    def mark_failed(self, delivery_id: int, error: str) -> None: ...
    def hold(self, delivery_id: int) -> None: ...
    def held_for(self, recipient: str) -> list[Delivery]: ...
    def held_recipients(self) -> list[str]: ...
    def mark_summarised(self, delivery_ids: list[int], now: float, provider_id: str) -> None: ...
    def sent_times(self, since: float) -> list[tuple[str, float]]: ...
    def get_alert(self, alert_id: int) -> Alert | None: ...
    def alerts(self, status: str | None, limit: int) -> list[Alert]: ...
    def crop(self, alert_id: int) -> bytes | None: ...
    def deliveries_of(self, alert_id: int) -> list[Delivery]: ...
    def confirm(self, alert_id: int, by: str, now: float) -> int: ...
    def reject(self, alert_id: int, by: str, reason: str, now: float, suppress_until: float | None) -> int: ...
    def purge(self, now: float, retention_s: float, seen_ids_s: float) -> dict[str, int]: ...
    def close(self) -> None: ...


def _ts(dt) -> float:
    return dt.timestamp()


class SqliteStore:
    """:class:`RelayStore` on one SQLite file in WAL mode. One instance per thread."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "full",
        readonly: bool = False,
        lock: threading.RLock | None = None,
    ) -> None:
        """``lock``: share one lock between the instances of a process, so they queue in Python
        instead of in SQLite's busy handler (which sleeps in steps of up to 100 ms)."""
        self.path = Path(path)
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, timeout=10)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._db.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise InputError(f"relay store {self.path}", f"cannot open: {err}") from None
        self._db.row_factory = sqlite3.Row
        self._lock = lock or threading.RLock()
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")

    def _x(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    # --- ingest -----------------------------------------------------------------------------

    def mark_seen(self, event_id: str, received_at: float) -> bool:
        cur = self._x("INSERT OR IGNORE INTO seen_events(event_id, received_at) VALUES (?, ?)", (event_id, received_at))
        return cur.rowcount == 1

    def is_suppressed(self, person_id: str, device_id: str, now: float) -> bool:
        row = self._x(
            "SELECT 1 FROM suppressions WHERE person_id=? AND device_id=? AND until>?", (person_id, device_id, now)
        ).fetchone()
        return row is not None

    def find_alert(self, gallery_id: str, person_id: str, seen_at: float, window_s: float) -> Alert | None:
        row = self._x(
            "SELECT * FROM alerts WHERE gallery_id=? AND person_id=? AND first_seen_at BETWEEN ? AND ?"
            " AND status != ? ORDER BY abs(first_seen_at - ?) LIMIT 1",
            (gallery_id, person_id, seen_at - window_s, seen_at + window_s, ALERT_REJECTED, seen_at),
        ).fetchone()
        return self._alert(row) if row else None

    def create_alert(
        self, event: MatchEvent, gallery_id: str, status: str, recipients: list[str], stale: bool, now: float
    ) -> int:
        slim = event.model_copy(update={"crop_jpeg_b64": None}).model_dump_json(exclude_none=True)
        with self.transaction():
            cur = self._x(
                "INSERT INTO alerts(gallery_id, person_id, status, first_seen_at, last_seen_at, created_at,"
                " devices, best_score, stale, event, crop) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    gallery_id,
                    event.person_id,
                    status,
                    _ts(event.seen_at),
                    _ts(event.seen_at),
                    now,
                    json.dumps([event.device_id]),
                    event.score,
                    int(stale),
                    slim,
                    event.crop_jpeg(),
                ),
            )
            alert_id = int(cur.lastrowid)
            state = "waiting" if status == ALERT_REVIEW else "pending"
            for name in recipients:
                self._x(
                    "INSERT INTO deliveries(alert_id, recipient, status, created_at, next_attempt_at) VALUES (?,?,?,?,?)",
                    (alert_id, name, state, now, now),
                )
        return alert_id

    def add_sighting(self, alert_id: int, event: MatchEvent) -> None:
        row = self._x("SELECT devices FROM alerts WHERE id=?", (alert_id,)).fetchone()
        devices = json.loads(row["devices"])
        if event.device_id not in devices:
            devices.append(event.device_id)
        seen = _ts(event.seen_at)
        self._x(
            "UPDATE alerts SET sightings = sightings + 1, devices=?, last_seen_at=max(last_seen_at, ?),"
            " first_seen_at=min(first_seen_at, ?), best_score=max(best_score, ?) WHERE id=?",
            (json.dumps(devices), seen, seen, event.score, alert_id),
        )

    def add_history(self, event: MatchEvent, received_at: float, outcome: str, alert_id: int | None) -> None:
        self._x(
            "INSERT INTO history(event_id, device_id, person_id, score, seen_at, received_at, outcome, alert_id)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                str(event.event_id),
                event.device_id,
                event.person_id,
                event.score,
                _ts(event.seen_at),
                received_at,
                outcome,
                alert_id,
            ),
        )

    # --- delivery outbox --------------------------------------------------------------------

    def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        rows = self._x(
            "SELECT * FROM deliveries WHERE status='pending' AND next_attempt_at<=? ORDER BY next_attempt_at, id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [self._delivery(r) for r in rows]

    def next_due_at(self) -> float | None:
        row = self._x("SELECT min(next_attempt_at) AS t FROM deliveries WHERE status='pending'").fetchone()
        return row["t"]

    def mark_sent(self, delivery_id: int, now: float, provider_id: str) -> None:
        self._x(
            "UPDATE deliveries SET status='sent', sent_at=?, provider_id=?, attempts=attempts+1 WHERE id=?",
            (now, provider_id, delivery_id),
        )

    def mark_retry(self, delivery_id: int, next_at: float, error: str) -> None:
        self._x(
            "UPDATE deliveries SET attempts=attempts+1, next_attempt_at=?, last_error=? WHERE id=?",
            (next_at, error[:500], delivery_id),
        )

    def mark_failed(self, delivery_id: int, error: str) -> None:
        self._x(
            "UPDATE deliveries SET status='failed', attempts=attempts+1, last_error=? WHERE id=?",
            (error[:500], delivery_id),
        )

    def hold(self, delivery_id: int) -> None:
        self._x("UPDATE deliveries SET status='held' WHERE id=?", (delivery_id,))

    def held_for(self, recipient: str) -> list[Delivery]:
        rows = self._x("SELECT * FROM deliveries WHERE status='held' AND recipient=? ORDER BY id", (recipient,))
        return [self._delivery(r) for r in rows.fetchall()]

    def held_recipients(self) -> list[str]:
        rows = self._x("SELECT DISTINCT recipient FROM deliveries WHERE status='held'").fetchall()
        return [r["recipient"] for r in rows]

    def mark_summarised(self, delivery_ids: list[int], now: float, provider_id: str) -> None:
        with self.transaction():
            for did in delivery_ids:
                self._x(
                    "UPDATE deliveries SET status='summarised', sent_at=?, provider_id=? WHERE id=?",
                    (now, provider_id, did),
                )

    def sent_times(self, since: float) -> list[tuple[str, float]]:
        rows = self._x(
            "SELECT recipient, sent_at FROM deliveries WHERE status='sent' AND sent_at>=? ORDER BY sent_at", (since,)
        ).fetchall()
        return [(r["recipient"], r["sent_at"]) for r in rows]

    # --- review -----------------------------------------------------------------------------

    def get_alert(self, alert_id: int) -> Alert | None:
        row = self._x("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()
        return self._alert(row) if row else None

    def alerts(self, status: str | None, limit: int) -> list[Alert]:
        if status:
            rows = self._x("SELECT * FROM alerts WHERE status=? ORDER BY id LIMIT ?", (status, limit))
        else:
            rows = self._x("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (limit,))
        return [self._alert(r) for r in rows.fetchall()]

    def crop(self, alert_id: int) -> bytes | None:
        row = self._x("SELECT crop FROM alerts WHERE id=?", (alert_id,)).fetchone()
        return row["crop"] if row else None

    def deliveries_of(self, alert_id: int) -> list[Delivery]:
        rows = self._x("SELECT * FROM deliveries WHERE alert_id=? ORDER BY id", (alert_id,)).fetchall()
        return [self._delivery(r) for r in rows]

    def _decide(self, alert_id: int, status: str, by: str, reason: str | None, now: float) -> None:
        cur = self._x(
            "UPDATE alerts SET status=?, reviewed_by=?, reviewed_at=?, review_reason=? WHERE id=? AND status=?",
            (status, by, now, reason, alert_id, ALERT_REVIEW),
        )
        if cur.rowcount != 1:
            alert = self.get_alert(alert_id)
            why = "no such alert" if alert is None else f"it is not awaiting review (status {alert.status})"
            raise InputError(f"alert {alert_id}", why)

    def confirm(self, alert_id: int, by: str, now: float) -> int:
        """Release a reviewed alert for delivery; returns the number of deliveries released."""
        with self.transaction():
            self._decide(alert_id, ALERT_OPEN, by, None, now)
            cur = self._x(
                "UPDATE deliveries SET status='pending', next_attempt_at=? WHERE alert_id=? AND status='waiting'",
                (now, alert_id),
            )
        return cur.rowcount

    def reject(self, alert_id: int, by: str, reason: str, now: float, suppress_until: float | None) -> int:
        """Reject ("not this person"): nothing is sent; optionally suppress the pair (person, device)."""
        with self.transaction():
            self._decide(alert_id, ALERT_REJECTED, by, reason, now)
            cur = self._x("UPDATE deliveries SET status='cancelled' WHERE alert_id=? AND status='waiting'", (alert_id,))
            if suppress_until is not None:
                alert = self.get_alert(alert_id)
                for device in alert.devices:
                    self._x(
                        "INSERT OR REPLACE INTO suppressions(person_id, device_id, until, alert_id, reason)"
                        " VALUES (?,?,?,?,?)",
                        (alert.person_id, device, suppress_until, alert_id, reason),
                    )
        return cur.rowcount

    # --- retention --------------------------------------------------------------------------

    def purge(self, now: float, retention_s: float, seen_ids_s: float) -> dict[str, int]:
        cutoff = now - retention_s
        done = ",".join(f"'{s}'" for s in TERMINAL)
        with self.transaction():
            counts = {
                "seen_events": self._x("DELETE FROM seen_events WHERE received_at<?", (now - seen_ids_s,)).rowcount,
                "history": self._x("DELETE FROM history WHERE received_at<?", (cutoff,)).rowcount,
                "suppressions": self._x("DELETE FROM suppressions WHERE until<?", (now,)).rowcount,
            }
            old = (
                f"SELECT id FROM alerts WHERE created_at<? AND status!='{ALERT_REVIEW}' AND NOT EXISTS"
                f" (SELECT 1 FROM deliveries d WHERE d.alert_id=alerts.id AND d.status NOT IN ({done}))"
            )
            self._x(f"DELETE FROM deliveries WHERE alert_id IN ({old})", (cutoff,))
            counts["alerts"] = self._x(f"DELETE FROM alerts WHERE id IN ({old})", (cutoff,)).rowcount
        return counts

    def counts(self) -> dict[str, int]:
        rows = self._x("SELECT status, count(*) AS n FROM deliveries GROUP BY status").fetchall()
        return {r["status"]: r["n"] for r in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- rows -------------------------------------------------------------------------------

    @staticmethod
    def _alert(row: sqlite3.Row) -> Alert:
        return Alert(
            id=row["id"],
            gallery_id=row["gallery_id"],
            person_id=row["person_id"],
            status=row["status"],
            first_seen_at=row["first_seen_at"],
            last_seen_at=row["last_seen_at"],
            created_at=row["created_at"],
            sightings=row["sightings"],
            devices=json.loads(row["devices"]),
            best_score=row["best_score"],
            stale=bool(row["stale"]),
            event=MatchEvent.model_validate_json(row["event"]),
            has_crop=row["crop"] is not None,
            reviewed_by=row["reviewed_by"],
            reviewed_at=row["reviewed_at"],
            review_reason=row["review_reason"],
        )

    @staticmethod
    def _delivery(row: sqlite3.Row) -> Delivery:
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
