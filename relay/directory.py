"""Person details from the gallery bundle's metadata file, looked up at alert time.

Contract with the gallery (``lookout.gallery.metadata``): ``gallery.sqlite`` has
``persons(person_id TEXT PRIMARY KEY, name TEXT NOT NULL, jurisdiction TEXT, department TEXT,
attributes TEXT)``, where ``attributes`` is a JSON object (age, sex, date_last_seen, case_url, ...). The file is
replaced atomically when a new bundle arrives, so :class:`SqliteDirectory` reopens it
when its inode or mtime changes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lookout.gallery import metadata
from lookout.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class PersonDetails:
    person_id: str
    name: str
    jurisdiction: str | None = None
    department: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def attr(self, key: str) -> str | None:
        value = self.attributes.get(key)
        return None if value in (None, "") else str(value)


class PersonDirectory(Protocol):
    def lookup(self, person_id: str) -> PersonDetails | None: ...


class NoDirectory:
    """No gallery metadata configured: every lookup is 'details unavailable'."""

    def lookup(self, person_id: str) -> PersonDetails | None:
        return None


class SqliteDirectory:
    """Read-only lookups in ``gallery.sqlite``, reopened when the file is replaced."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection | None:
        try:
            st = os.stat(self.path)
        except OSError:
            if self._stamp is not None:
                log.warning("directory.missing", path=str(self.path))
            self._close()
            return None
        stamp = (st.st_ino, st.st_mtime_ns)
        if self._db is None or stamp != self._stamp:
            self._close()
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._stamp = stamp
            log.info("directory.opened", path=str(self.path))
        return self._db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db, self._stamp = None, None

    def lookup(self, person_id: str) -> PersonDetails | None:
        """Details for ``person_id``, or None if unknown or the file is unreadable (logged)."""
        with self._lock:
            try:
                db = self._connection()
                if db is None:
                    return None
                row = metadata.find_person(db, person_id)
            except sqlite3.Error as err:
                log.warning("directory.error", path=str(self.path), person_id=person_id, error=str(err))
                self._close()
                return None
        if row is None:
            return None
        return PersonDetails(row[0], row[1], row[2], row[3], _attributes(row[4], person_id))

    def close(self) -> None:
        with self._lock:
            self._close()


def _attributes(text: str | None, person_id: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        log.warning("directory.bad_attributes", person_id=person_id)
        return {}
    return value if isinstance(value, dict) else {}


def open_directory(path: Path | None) -> PersonDirectory:
    return SqliteDirectory(path) if path is not None else NoDirectory()
