"""Gallery metadata in SQLite (``gallery.sqlite`` in every bundle).

Contract (the relay reads it read-only to format alerts)::

    persons(person_id TEXT PRIMARY KEY, name TEXT NOT NULL, jurisdiction TEXT,
            department TEXT, attributes TEXT)   -- attributes: a JSON object

Also here: ``photos`` (one row per enrolled photo, ``label`` is its id in the
HNSW index) and the ``labels`` view (label -> person). Only enrolled people are
stored: a policy-excluded record never reaches this file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE persons(
    person_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    jurisdiction TEXT,
    department TEXT,
    attributes TEXT
);
CREATE TABLE photos(
    photo_id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL REFERENCES persons(person_id),
    label INTEGER NOT NULL UNIQUE,
    source TEXT,
    sha256 TEXT,
    box TEXT,
    quality TEXT
);
CREATE INDEX photos_person ON photos(person_id);
CREATE VIEW labels AS SELECT label, person_id, photo_id FROM photos;
"""

PERSON_COLUMNS = ("person_id", "name", "jurisdiction", "department", "attributes")
PHOTO_COLUMNS = ("photo_id", "person_id", "label", "source", "sha256", "box", "quality")


def create(path: Path) -> sqlite3.Connection:
    path = Path(path)
    if path.exists():
        path.unlink()
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    return conn


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def person_row(person: Any) -> tuple[Any, ...]:
    """A PersonRecord-like object (or dict) -> a persons row."""
    get = person.get if isinstance(person, dict) else (lambda k, d=None: getattr(person, k, d))
    attrs = get("attributes") or {}
    return (
        get("person_id"),
        get("name"),
        get("jurisdiction"),
        get("department"),
        json.dumps(attrs, sort_keys=True, default=str),
    )


def upsert_persons(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO persons(person_id, name, jurisdiction, department, attributes) VALUES (?,?,?,?,?) "
        "ON CONFLICT(person_id) DO UPDATE SET name=excluded.name, jurisdiction=excluded.jurisdiction, "
        "department=excluded.department, attributes=excluded.attributes",
        list(rows),
    )


def insert_photos(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO photos(photo_id, person_id, label, source, sha256, box, quality) VALUES (?,?,?,?,?,?,?)",
        list(rows),
    )


def delete_photos(conn: sqlite3.Connection, photo_ids: Iterable[str]) -> None:
    conn.executemany("DELETE FROM photos WHERE photo_id = ?", [(p,) for p in photo_ids])


# The withdrawal ledger: photos whose consent an operator withdrew, people an operator removed. It travels
# in the bundle so the next update never re-enrols them from an unchanged source. Created only when used,
# so bundles without withdrawals keep the schema above.
WITHDRAWN_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS withdrawn(kind TEXT NOT NULL, id TEXT NOT NULL, reason TEXT, at TEXT, "
    "PRIMARY KEY(kind, id))"
)


def withdrawn(conn: sqlite3.Connection) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind "photo"|"person", id) -> (reason, at); empty for bundles that never had a withdrawal."""
    try:
        rows = conn.execute("SELECT kind, id, reason, at FROM withdrawn").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {(r[0], r[1]): (r[2] or "", r[3] or "") for r in rows}


def change_withdrawn(conn: sqlite3.Connection, add: Iterable[Iterable[str]], drop: Iterable[Iterable[str]]) -> None:
    added, dropped = [tuple(r) for r in add], [tuple(r) for r in drop]
    if not added and not dropped:
        return
    conn.execute(WITHDRAWN_SCHEMA)
    conn.executemany("INSERT OR REPLACE INTO withdrawn(kind, id, reason, at) VALUES (?,?,?,?)", added)
    conn.executemany("DELETE FROM withdrawn WHERE kind = ? AND id = ?", dropped)


def delete_persons(conn: sqlite3.Connection, person_ids: Iterable[str]) -> None:
    ids = [(p,) for p in person_ids]
    conn.executemany("DELETE FROM photos WHERE person_id = ?", ids)
    conn.executemany("DELETE FROM persons WHERE person_id = ?", ids)


def persons(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    out = {}
    for row in conn.execute(
        "SELECT person_id, name, jurisdiction, department, attributes FROM persons ORDER BY person_id"
    ):
        out[row[0]] = {
            "person_id": row[0],
            "name": row[1],
            "jurisdiction": row[2],
            "department": row[3],
            "attributes": json.loads(row[4]) if row[4] else {},
        }
    return out


def find_person(conn: sqlite3.Connection, person_id: str) -> tuple[Any, ...] | None:
    """One persons row (``PERSON_COLUMNS``, attributes still JSON text), or None. The relay's lookup."""
    cols = ", ".join(PERSON_COLUMNS)
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {cols} FROM persons WHERE person_id = ?", (person_id,)
    ).fetchone()
    return row


def photos(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    cols = ", ".join(PHOTO_COLUMNS)
    return [dict(zip(PHOTO_COLUMNS, row)) for row in conn.execute(f"SELECT {cols} FROM photos ORDER BY label")]


def places(conn: sqlite3.Connection) -> list[tuple[str | None, str | None]]:
    """Every distinct (jurisdiction, department) of the people in the gallery: what a policy decides on."""
    return [(r[0] or None, r[1] or None) for r in conn.execute("SELECT DISTINCT jurisdiction, department FROM persons")]


def photo_owners(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each photo's label, id and person only: what searching needs (a device reads 25,000 of them at
    every gallery load; the full rows would cost three times the memory while loading)."""
    return [
        {"label": row[0], "photo_id": row[1], "person_id": row[2]}
        for row in conn.execute("SELECT label, photo_id, person_id FROM photos ORDER BY label")
    ]


def jurisdictions(conn: sqlite3.Connection) -> list[str]:
    return [r[0] or "" for r in conn.execute("SELECT DISTINCT jurisdiction FROM persons ORDER BY 1")]
