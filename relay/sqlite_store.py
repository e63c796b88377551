""":class:`RelayStore` on one SQLite file in WAL mode: the embedded default for one relay host.

Every write runs under ``BEGIN IMMEDIATE``, SQLite's one-writer lock, so the read-then-write steps of
sighting dedup and rate limits cannot race even between several relay processes on one host. The
delivery outbox is claimed with a lease (``claimed_by``/``claimed_until``): a claim of a process that
died is taken over when its lease ends, or at once when a relay with the same owner id restarts.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lookout.errors import InputError
from lookout.log import get_logger
from lookout.relay.gaps import NEW_STREAMS, TAIL, walk
from lookout.relay.migrate import VERSION_TABLE, pending
from lookout.relay.ratelimit import OVERALL, Limits
from lookout.relay.records import (
    ALERT_REVIEW,
    TERMINAL,
    Alert,
    Delivery,
    DeliveryResult,
    Gap,
    Ingested,
    Intake,
    StoreUnavailable,
)
from lookout.relay.review_sql import ReviewSql, Row, alert_from_row, by_recipient, delivery_from_row
from lookout.relay.sqlite_ingest import SqliteBatch

log = get_logger(__name__)


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


class SqliteStore(ReviewSql):
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

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        return [dict(r) for r in self._x(sql, args).fetchall()]

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        return self._x(sql, args).rowcount

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
        yield sorted((delivery_from_row(r) for r in rows), key=lambda d: (d.next_attempt_at, d.id))

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
        yield by_recipient(delivery_from_row(r) for r in rows)

    def release_claims(self, owner: str) -> int:
        """Give back what ``owner`` had claimed (a relay restarting under the same id)."""
        return self._x(
            "UPDATE deliveries SET claimed_by=NULL, claimed_until=NULL WHERE claimed_by=?", (owner,)
        ).rowcount

    def alerts_by_id(self, ids: list[int]) -> dict[int, Alert]:
        if not ids:
            return {}
        rows = self._x(f"SELECT * FROM alerts WHERE id IN ({','.join('?' * len(ids))})", tuple(ids)).fetchall()
        return {r["id"]: alert_from_row(r) for r in rows}

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

    def close(self) -> None:
        with self._lock:
            self._db.close()
