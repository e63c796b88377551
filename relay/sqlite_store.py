""":class:`RelayStore` on one SQLite file in WAL mode: the embedded default for one relay host.

Every write runs under ``BEGIN IMMEDIATE``, SQLite's one-writer lock, so the read-then-write steps of
sighting dedup and rate limits cannot race even between several relay processes on one host. The
delivery outbox is claimed with a lease (``claimed_by``/``claimed_until``): a claim of a process that
died is taken over when its lease ends, or at once when a relay with the same owner id restarts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lookout.errors import InputError
from lookout.log import get_logger
from lookout.relay.gaps import NEW_STREAMS, TAIL, walk
from lookout.relay.migrate import VERSION_TABLE, pending
from lookout.relay.ratelimit import OVERALL, Limits
from lookout.relay.records import (
    ALERT_CONFIRMED,
    ALERT_REJECTED,
    ALERT_REVIEW,
    TERMINAL,
    Alert,
    AuditEntry,
    AuditFilter,
    Delivery,
    DeliveryResult,
    Gap,
    Ingested,
    Intake,
    Sighting,
    StoreUnavailable,
)
from lookout.relay.sqlite_ingest import SqliteBatch

log = get_logger(__name__)

# SQLite returns the other columns from the row holding the max().
LAST_MATCH_SQL = "SELECT device_id, max(seen_at) AS seen_at, person_id FROM history GROUP BY device_id"


def split_statements(script: str) -> list[str]:
    """SQL statements of ``script``, triggers kept whole (``executescript`` would commit first)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not buf.strip().startswith("--"):
        out.append(buf.strip())
    return out


class SqliteStore:
    """One connection; share ``lock`` between the instances of a process (see :meth:`sibling`)."""

    kind = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "full",
        readonly: bool = False,
        lock: threading.RLock | None = None,
    ) -> None:
        """``lock``: instances of one process queue on it in Python instead of in SQLite's busy
        handler (which sleeps in steps of up to 100 ms)."""
        self.path = Path(path)
        self.synchronous = synchronous
        self._lock = lock or threading.RLock()
        self._depth = 0
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, timeout=10)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._migrate()
        except sqlite3.Error as err:
            raise InputError(f"relay store {self.path}", f"cannot open: {err}") from None
        self._db.row_factory = sqlite3.Row

    def sibling(self, *, durable: bool = True) -> SqliteStore:
        """Another connection to the same file for another thread of this process. ``durable=False``: its
        commits are not fsynced themselves (WAL, ``synchronous=NORMAL``); the next durable commit on the
        file carries them. For delivery bookkeeping, where a lost commit means a repeated send, never a
        lost alert (alerts and their deliveries are written by the intake's durable connection)."""
        return SqliteStore(self.path, synchronous=self.synchronous if durable else "normal", lock=self._lock)

    def _migrate(self) -> None:
        with self.transaction():
            self._db.execute(VERSION_TABLE)
            applied = {r[0] for r in self._db.execute("SELECT version FROM schema_version")}
            for step in pending("sqlite", applied, f"relay store {self.path}"):
                for statement in split_statements(step.sql):
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO schema_version(version, name, applied_at) VALUES (?,?,?)",
                    (step.version, step.name, time.time()),
                )
                log.info("store.migrated", store=str(self.path), version=step.version, name=step.name)

    def schema_version(self) -> int:
        return int(self._x("SELECT max(version) FROM schema_version").fetchone()[0] or 0)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._guard(lambda: self._db.execute("BEGIN IMMEDIATE"))
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
                self._guard(lambda: self._db.execute("COMMIT"))

    @staticmethod
    def _guard(call):
        try:
            return call()
        except sqlite3.OperationalError as err:  # locked, disk full, I/O: the store, not the data
            raise StoreUnavailable(f"sqlite: {err}") from err

    def _x(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._guard(lambda: self._db.execute(sql, args))

    def ping(self) -> bool:
        try:
            self._x("SELECT 1").fetchone()
        except (StoreUnavailable, sqlite3.Error):
            return False
        return True

    # --- intake -----------------------------------------------------------------------------

    def ingest(self, items: list[Intake], received_at: float, window_s: float) -> list[Ingested]:
        """Record a batch of events and decide each one's outcome, atomically (rules: ``lookout.relay.store``)."""
        if not items:
            return []
        with self.transaction(), self._lock:
            return self._guard(lambda: SqliteBatch(self._db, received_at, window_s).run(items))

    # --- delivery outbox --------------------------------------------------------------------

    @contextmanager
    def claim_due(self, now: float, limit: int, owner: str, lease_s: float) -> Iterator[list[Delivery]]:
        """Due deliveries, leased to ``owner`` until ``now + lease_s`` (mark_* ends the lease)."""
        with self.transaction():
            rows = self._x(
                "UPDATE deliveries SET claimed_by=?, claimed_until=? WHERE id IN (SELECT id FROM deliveries"
                " WHERE status='pending' AND next_attempt_at<=? AND (claimed_until IS NULL OR claimed_until<?)"
                " ORDER BY next_attempt_at, id LIMIT ?) RETURNING *",
                (owner, now + lease_s, now, now, limit),
            ).fetchall()
        yield sorted((self._delivery(r) for r in rows), key=lambda d: (d.next_attempt_at, d.id))

    @contextmanager
    def claim_held(
        self, now: float, held_for_s: float, owner: str, lease_s: float
    ) -> Iterator[dict[str, list[Delivery]]]:
        """Held deliveries of each recipient whose oldest hold is at least ``held_for_s`` old, leased."""
        with self.transaction():
            rows = self._x(
                "UPDATE deliveries SET claimed_by=?, claimed_until=? WHERE status='held'"
                " AND (claimed_until IS NULL OR claimed_until<?) AND recipient IN (SELECT recipient FROM"
                " deliveries WHERE status='held' GROUP BY recipient HAVING min(held_at)<=?) RETURNING *",
                (owner, now + lease_s, now, now - held_for_s),
            ).fetchall()
        yield _by_recipient(self._delivery(r) for r in rows)

    def release_claims(self, owner: str) -> int:
        """Give back what ``owner`` had claimed (a relay restarting under the same id)."""
        return self._x(
            "UPDATE deliveries SET claimed_by=NULL, claimed_until=NULL WHERE claimed_by=?", (owner,)
        ).rowcount

    def alerts_by_id(self, ids: list[int]) -> dict[int, Alert]:
        if not ids:
            return {}
        rows = self._x(f"SELECT * FROM alerts WHERE id IN ({','.join('?' * len(ids))})", tuple(ids)).fetchall()
        return {r["id"]: self._alert(r) for r in rows}

    def record(self, results: list[DeliveryResult]) -> None:
        """Write a batch's delivery results (one statement per kind, one transaction); ends their claims."""
        by_kind: dict[str, list[DeliveryResult]] = {}
        for r in results:
            by_kind.setdefault(r.kind, []).append(r)
        with self.transaction(), self._lock:
            self._guard(lambda: self._record(by_kind))

    def _record(self, by_kind: dict[str, list[DeliveryResult]]) -> None:
        free = "claimed_by=NULL, claimed_until=NULL"
        statements = {
            "sent": (f"UPDATE deliveries SET status='sent', sent_at=?, provider_id=?, attempts=attempts+1, {free} WHERE id=?", lambda r: (r.at, r.provider_id, r.delivery_id)),
            "retry": (f"UPDATE deliveries SET attempts=attempts+1, next_attempt_at=?, last_error=?, {free} WHERE id=?", lambda r: (r.at, r.error[:500], r.delivery_id)),
            "failed": (f"UPDATE deliveries SET status='failed', attempts=attempts+1, last_error=?, {free} WHERE id=?", lambda r: (r.error[:500], r.delivery_id)),
            "held": (f"UPDATE deliveries SET status='held', held_at=?, {free} WHERE id=?", lambda r: (r.at, r.delivery_id)),
        }  # fmt: skip
        for kind, rows in by_kind.items():
            sql, args = statements[kind]
            self._db.executemany(sql, [args(r) for r in rows])

    def next_due_at(self) -> float | None:
        row = self._x("SELECT min(next_attempt_at) AS t FROM deliveries WHERE status='pending'").fetchone()
        return row["t"]

    def mark_sent(self, delivery_id: int, now: float, provider_id: str) -> None:
        self._x(
            "UPDATE deliveries SET status='sent', sent_at=?, provider_id=?, attempts=attempts+1,"
            " claimed_by=NULL, claimed_until=NULL WHERE id=?",
            (now, provider_id, delivery_id),
        )

    def mark_retry(self, delivery_id: int, next_at: float, error: str) -> None:
        self._x(
            "UPDATE deliveries SET attempts=attempts+1, next_attempt_at=?, last_error=?,"
            " claimed_by=NULL, claimed_until=NULL WHERE id=?",
            (next_at, error[:500], delivery_id),
        )

    def mark_failed(self, delivery_id: int, error: str) -> None:
        self._x(
            "UPDATE deliveries SET status='failed', attempts=attempts+1, last_error=?,"
            " claimed_by=NULL, claimed_until=NULL WHERE id=?",
            (error[:500], delivery_id),
        )

    def hold(self, delivery_id: int, now: float) -> None:
        self._x(
            "UPDATE deliveries SET status='held', held_at=?, claimed_by=NULL, claimed_until=NULL WHERE id=?",
            (now, delivery_id),
        )

    def mark_summarised(self, delivery_ids: list[int], now: float, provider_id: str) -> None:
        with self.transaction():
            for did in delivery_ids:
                self._x(
                    "UPDATE deliveries SET status='summarised', sent_at=?, provider_id=?,"
                    " claimed_by=NULL, claimed_until=NULL WHERE id=?",
                    (now, provider_id, did),
                )

    # --- shared rate limits -----------------------------------------------------------------

    def rate_take(self, recipient: str, now: float, limits: Limits) -> int | None:
        """Record a send to ``recipient`` if both windows have room; the ledger row id, or None."""
        with self.transaction():
            for key, window in ((recipient, limits.per_recipient), (OVERALL, limits.overall)):
                if window is None:
                    continue
                if key == OVERALL:
                    used = self._x("SELECT count(*) FROM sends WHERE at>?", (now - window.per_s,)).fetchone()[0]
                else:
                    used = self._x(
                        "SELECT count(*) FROM sends WHERE recipient=? AND at>?", (key, now - window.per_s)
                    ).fetchone()[0]
                if used >= window.count:
                    return None
            return int(self._x("INSERT INTO sends(recipient, at) VALUES (?,?)", (recipient, now)).lastrowid or 0)

    def rate_release(self, ledger_id: int) -> None:
        """Undo a :meth:`rate_take` whose send failed."""
        self._x("DELETE FROM sends WHERE id=?", (ledger_id,))

    def rate_record(self, recipient: str, now: float) -> None:
        """Record a send that limits do not stop (a summary)."""
        self._x("INSERT INTO sends(recipient, at) VALUES (?,?)", (recipient, now))

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

    def sightings(self, alert_id: int) -> list[Sighting]:
        rows = self._x(
            "SELECT event_id, device_id, person_id, score, margin, seen_at, received_at, outcome, alert_id"
            " FROM history WHERE alert_id=? ORDER BY seen_at, id",
            (alert_id,),
        ).fetchall()
        return [Sighting(*tuple(r)) for r in rows]

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

    def confirm(self, alert_id: int, by: str, now: float, reason: str | None = None) -> int:
        """Release a reviewed alert for delivery (audited); returns the number of deliveries released."""
        with self.transaction():
            self._decide(alert_id, ALERT_CONFIRMED, by, reason, now)
            cur = self._x(
                "UPDATE deliveries SET status='pending', next_attempt_at=? WHERE alert_id=? AND status='waiting'",
                (now, alert_id),
            )
            self.audit(by, "review.confirm", f"alert:{alert_id}", reason, {"released": cur.rowcount}, now)
        return cur.rowcount

    def reject(self, alert_id: int, by: str, reason: str, now: float, suppress_until: float | None) -> int:
        """Reject ("not this person", audited): nothing is sent; optionally suppress (person, device)."""
        with self.transaction():
            self._decide(alert_id, ALERT_REJECTED, by, reason, now)
            cur = self._x("UPDATE deliveries SET status='cancelled' WHERE alert_id=? AND status='waiting'", (alert_id,))
            alert = self.get_alert(alert_id)
            devices = alert.devices if alert and suppress_until is not None else []
            for device in devices:
                self._x(
                    "INSERT OR REPLACE INTO suppressions(person_id, device_id, until, alert_id, reason)"
                    " VALUES (?,?,?,?,?)",
                    (alert.person_id if alert else "", device, suppress_until, alert_id, reason),
                )
            details = {"cancelled": cur.rowcount, "suppressed_devices": devices, "suppressed_until": suppress_until}
            self.audit(by, "review.reject", f"alert:{alert_id}", reason, details, now)
        return cur.rowcount

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
        """Append one audit row (the table refuses UPDATE and DELETE)."""
        cur = self._x(
            "INSERT INTO audit(at, actor, action, subject, reason, details) VALUES (?,?,?,?,?,?)",
            (now if now is not None else time.time(), actor, action, subject, reason, json.dumps(details or {})),
        )
        return int(cur.lastrowid or 0)

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
        where, args = AuditFilter(since, until, actor, action, text).clauses("?", "instr")
        rows = self._x(
            f"SELECT * FROM audit WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?", (*args, limit, offset)
        ).fetchall()
        return [
            AuditEntry(r["id"], r["at"], r["actor"], r["action"], r["subject"], r["reason"], json.loads(r["details"]))
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
        where, args = AuditFilter(since, until, actor, action, text).clauses("?", "instr")
        row = self._x(f"SELECT count(*) AS n FROM audit WHERE {where}", tuple(args)).fetchone()
        return int(row["n"]) if row else 0

    def last_match_by_device(self) -> dict[str, tuple[float, str]]:
        """Each device's most recent accepted sighting: (seen_at, person_id), from history."""
        rows = self._x(LAST_MATCH_SQL).fetchall()
        return {r["device_id"]: (r["seen_at"], r["person_id"]) for r in rows}

    # --- sequence gaps ----------------------------------------------------------------------

    def find_gaps(self, now: float, grace_s: float, since: float) -> list[Gap]:
        """Gaps in devices' sequence numbers that stayed open ``grace_s`` after the next number came;
        each is returned (and recorded in ``seq_gaps``) once."""
        with self.transaction():
            self._x(NEW_STREAMS.format(p="?"), (since,))
            rows = [tuple(r) for r in self._x(TAIL).fetchall()]
            gaps, checked = walk(rows, now - grace_s)
            for (device, stream), n in checked.items():
                self._x("UPDATE seq_scan SET checked_n=? WHERE device_id=? AND stream=?", (n, device, stream))
            for gap in gaps:
                self._x(
                    "INSERT OR IGNORE INTO seq_gaps(device_id, stream, first_n, last_n, reported_at) VALUES (?,?,?,?,?)",
                    (gap.device_id, gap.stream, gap.first, gap.last, now),
                )
        return gaps

    # --- retention --------------------------------------------------------------------------

    def purge(self, now: float, retention_s: float, seen_ids_s: float, sends_s: float = 86400.0) -> dict[str, int]:
        cutoff = now - retention_s
        done = ",".join(f"'{s}'" for s in TERMINAL)
        with self.transaction():
            counts = {
                "seen_events": self._x("DELETE FROM seen_events WHERE received_at<?", (now - seen_ids_s,)).rowcount,
                "history": self._x("DELETE FROM history WHERE received_at<?", (cutoff,)).rowcount,
                "suppressions": self._x("DELETE FROM suppressions WHERE until<?", (now,)).rowcount,
                "sends": self._x("DELETE FROM sends WHERE at<?", (now - sends_s,)).rowcount,
                "device_seq": self._x("DELETE FROM device_seq WHERE received_at<?", (now - seen_ids_s,)).rowcount,
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
            event_json=row["event"],
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


def _by_recipient(deliveries) -> dict[str, list[Delivery]]:
    out: dict[str, list[Delivery]] = {}
    for d in sorted(deliveries, key=lambda d: d.id):
        out.setdefault(d.recipient, []).append(d)
    return out
