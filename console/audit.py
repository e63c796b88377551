"""The audit trail the console shows: who did what, when, to what, and why.

Reviews, searches and gallery changes are appended to one log. Its home is the relay store (the CLI's
``lookout review`` writes there too, in the same transaction as the decision); where the relay store does not
have it yet, the console keeps it in its own SQLite file with the same shape. Either way it is append-only:
triggers refuse UPDATE and DELETE.
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

CSV_FIELDS = ("id", "at_utc", "actor", "action", "target", "reason", "source", "detail")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    reason TEXT,
    detail TEXT NOT NULL DEFAULT '{}',
    source TEXT NOT NULL
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
    source: str = "console"
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
        parts, args = [], []
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
                "INSERT INTO audit(at, actor, action, target, reason, detail, source) VALUES (?,?,?,?,?,?,?)",
                (
                    entry.at,
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.reason,
                    json.dumps(entry.detail, sort_keys=True, default=str),
                    entry.source,
                ),
            )
            return int(cur.lastrowid or 0)

    def entries(self, flt: AuditFilter, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        where, args = flt.where()
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, at, actor, action, target, reason, detail, source FROM audit{where}"
                " ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [
            AuditEntry(
                id=r[0],
                at=r[1],
                actor=r[2],
                action=r[3],
                target=r[4],
                reason=r[5],
                detail=json.loads(r[6]),
                source=r[7],
            )
            for r in rows
        ]

    def count(self, flt: AuditFilter) -> int:
        where, args = flt.where()
        with self._lock:
            return int(self._db.execute(f"SELECT count(*) FROM audit{where}", args).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


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
            e.source,
            json.dumps(e.detail, sort_keys=True),
        ]
        writer.writerow([_defuse(str(v)) for v in row])
    return out.getvalue()


def _defuse(cell: str) -> str:
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell
