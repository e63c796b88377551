"""The audit trail the console shows: who did what, when, to what, and why.

Reviews, searches, gallery and account changes are appended to one log. Its home is the relay store's audit
table (``RelayAuditLog``): the relay's ``ReviewQueue`` writes each review decision there in the same transaction
as the decision, from ``lookout review`` and from the console alike. A console run without a relay store keeps the
same log in its own SQLite file (``SqliteAuditLog``). Both are append-only: triggers refuse UPDATE and DELETE.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

CSV_FIELDS = ("id", "at_utc", "actor", "action", "target", "reason", "detail")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    reason TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
"""


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    action: str
    target: str = ""
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    @property
    def at_utc(self) -> str:
        return datetime.fromtimestamp(self.at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    text: str | None = None
    since: float | None = None
    until: float | None = None

    def where(self) -> tuple[str, list[Any]]:
        parts: list[str] = []
        args: list[Any] = []
        if self.actor:
            parts.append("actor = ?")
            args.append(self.actor)
        if self.action:
            parts.append("(action = ? OR action LIKE ?)")
            args += [self.action, self.action + ".%"]
        if self.text:
            parts.append("(target LIKE ? OR reason LIKE ? OR detail LIKE ?)")
            args += [f"%{self.text}%"] * 3
        if self.since is not None:
            parts.append("at >= ?")
            args.append(self.since)
        if self.until is not None:
            parts.append("at < ?")
            args.append(self.until)
        return (" WHERE " + " AND ".join(parts)) if parts else "", args


class AuditLog(Protocol):
    def record(self, entry: AuditEntry) -> int: ...
    def entries(self, flt: AuditFilter, limit: int = 100, offset: int = 0) -> list[AuditEntry]: ...
    def count(self, flt: AuditFilter) -> int: ...


class SqliteAuditLog:
    """The append-only audit table in a SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def record(self, entry: AuditEntry) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO audit(at, actor, action, target, reason, detail) VALUES (?,?,?,?,?,?)",
                (
                    entry.at,
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.reason,
                    json.dumps(entry.detail, sort_keys=True, default=str),
                ),
            )
            return int(cur.lastrowid or 0)

    def entries(self, flt: AuditFilter, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        where, args = flt.where()
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, at, actor, action, target, reason, detail FROM audit{where}"
                " ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [AuditEntry(r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[0]) for r in rows]

    def count(self, flt: AuditFilter) -> int:
        where, args = flt.where()
        with self._lock:
            return int(self._db.execute(f"SELECT count(*) FROM audit{where}", args).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RelayAuditLog:
    """The relay store's audit table (``RelayStore.audit`` / ``audit_log`` / ``count_audit``), shared with
    ``lookout review``; the store filters and pages."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def record(self, entry: AuditEntry) -> int:
        return int(self.store.audit(entry.actor, entry.action, entry.target, entry.reason, entry.detail, entry.at))

    @staticmethod
    def _filters(flt: AuditFilter) -> dict[str, Any]:
        return {"since": flt.since, "until": flt.until, "actor": flt.actor, "action": flt.action, "text": flt.text}

    def entries(self, flt: AuditFilter, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        rows = self.store.audit_log(**self._filters(flt), limit=limit, offset=offset)
        return [AuditEntry(r.at, r.actor, r.action, r.subject, r.reason, dict(r.details), r.id) for r in rows]

    def count(self, flt: AuditFilter) -> int:
        return int(self.store.count_audit(**self._filters(flt)))

    def close(self) -> None:
        """The store belongs to the review desk, which closes it."""


def to_csv(entries: list[AuditEntry]) -> str:
    """CSV export; cells that a spreadsheet would run as a formula are prefixed with a quote."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for e in entries:
        row = [
            e.id,
            e.at_utc,
            e.actor,
            e.action,
            e.target,
            e.reason or "",
            json.dumps(e.detail, sort_keys=True),
        ]
        writer.writerow([_defuse(str(v)) for v in row])
    return out.getvalue()


def _defuse(cell: str) -> str:
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell
