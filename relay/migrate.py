"""Versioned schema migrations for the relay store: numbered SQL files applied in order at start.

``relay/schema/<engine>/NNNN_name.sql`` holds one step each; ``schema_version`` records which steps a
store has (version, name, applied_at). A store newer than this code (a version it has no file for)
is refused rather than written to. Each step runs in its own transaction with its version row, so a
crash leaves the store at the previous version. Callers serialise concurrent starts: SQLite with
``BEGIN IMMEDIATE``, PostgreSQL with a session advisory lock (two relays starting together).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from lookout.errors import InputError

VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " applied_at DOUBLE PRECISION NOT NULL)"
)
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    sql: str


def steps(engine: str) -> list[Step]:
    """The migration steps shipped for ``engine`` (``sqlite`` or ``postgresql``), in order."""
    folder = resources.files("lookout.relay").joinpath("schema", engine)
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Step(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda s: s.version)
    if [s.version for s in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"relay schema files for {engine} are not numbered 1..n: {[s.version for s in found]}")
    return found


def pending(engine: str, applied: set[int], where: str) -> list[Step]:
    """Steps not yet in ``applied``; refuses a store that has versions this code does not know."""
    shipped = steps(engine)
    unknown = sorted(applied - {s.version for s in shipped})
    if unknown:
        raise InputError(
            where,
            f"schema version {max(unknown)} is newer than this relay knows ({len(shipped)}); upgrade the relay",
        )
    return [s for s in shipped if s.version not in applied]
