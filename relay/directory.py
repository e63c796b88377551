"""Person details, and who the gallery holds, from the gallery bundle's metadata file.

Contract with the gallery (``lookout.gallery.metadata``): ``gallery.sqlite`` has
``persons(person_id TEXT PRIMARY KEY, name TEXT NOT NULL, jurisdiction TEXT, department TEXT,
attributes TEXT)``, where ``attributes`` is a JSON object (age, sex, date_last_seen, case_url, ...), and,
once an operator withdrew someone, the withdrawal ledger ``withdrawn(kind, id, reason, at)``. The file is
replaced atomically when a new bundle arrives, so :class:`SqliteDirectory` reopens it when its inode or
mtime changes.

Two uses: the message text (:meth:`SqliteDirectory.lookup`, "details unavailable" when unknown), and the
relay's own check of every event (:meth:`SqliteDirectory.membership`, which says *unavailable* rather than
*unknown* when the file cannot be read, so that a missing file never reads as "nobody is withdrawn").
"""

from __future__ import annotations

import os
import sqlite3
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lookout.errors import InputError, LookoutError
from lookout.events import read_json
from lookout.gallery import metadata
from lookout.log import get_logger

log = get_logger(__name__)


class DirectoryUnavailable(LookoutError):
    """The gallery.sqlite cannot be read now (missing, being replaced, corrupt): not the event's fault."""


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


@dataclass(frozen=True)
class Membership:
    """What the directory says about one person: their details (None: not in the gallery), and the withdrawal
    ledger's entry when an operator withdrew them (``"<reason> (<when>)"``)."""

    details: PersonDetails | None
    withdrawn: str | None = None


class PersonDirectory(Protocol):
    def lookup(self, person_id: str) -> PersonDetails | None: ...


class NoDirectory:
    """No gallery metadata configured: every lookup is 'details unavailable'."""

    def lookup(self, person_id: str) -> PersonDetails | None:
        return None


def ledger_key(person_id: str) -> str:
    """How the withdrawal ledger compares person ids: NFKC, case-folded, trimmed (``Amy`` is ``amy``)."""
    return unicodedata.normalize("NFKC", person_id).casefold().strip()


class SqliteDirectory:
    """Read-only lookups in ``gallery.sqlite``, reopened when the file is replaced."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._stamp: tuple[int, int] | None = None
        self._withdrawn: dict[str, str] = {}
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        """The open file, reopened when replaced; DirectoryUnavailable when it cannot be read."""
        try:
            st = os.stat(self.path)
        except OSError as err:
            if self._stamp is not None:
                log.warning("directory.missing", path=str(self.path))
            self._close()
            raise DirectoryUnavailable(f"gallery directory {self.path}: {err.strerror or err}") from None
        stamp = (st.st_ino, st.st_mtime_ns)
        if self._db is None or stamp != self._stamp:
            self._close()
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            try:
                ledger = metadata.withdrawn(db)
            except sqlite3.Error:
                db.close()
                raise
            self._withdrawn = {
                ledger_key(pid): f"{reason or 'withdrawn'}{f' ({at})' if at else ''}"
                for (kind, pid), (reason, at) in ledger.items()
                if kind == "person"
            }
            self._db, self._stamp = db, stamp
            log.info("directory.opened", path=str(self.path), withdrawn_persons=len(self._withdrawn))
        return self._db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db, self._stamp, self._withdrawn = None, None, {}

    def membership(self, person_id: str) -> Membership:
        """Is ``person_id`` in the gallery, and not withdrawn? Raises DirectoryUnavailable (never guesses)."""
        with self._lock:
            try:
                db = self._connection()
                row = metadata.find_person(db, person_id)
            except sqlite3.Error as err:
                self._close()
                raise DirectoryUnavailable(f"gallery directory {self.path}: {err}") from None
            withdrawn = self._withdrawn.get(ledger_key(person_id))
        details = None if row is None else PersonDetails(row[0], row[1], row[2], row[3], _attributes(row[4], person_id))
        return Membership(details, withdrawn)

    def lookup(self, person_id: str) -> PersonDetails | None:
        """Details for ``person_id``, or None if unknown or the file is unreadable (logged)."""
        try:
            return self.membership(person_id).details
        except DirectoryUnavailable as err:
            log.warning("directory.error", path=str(self.path), person_id=person_id, error=str(err))
            return None

    def close(self) -> None:
        with self._lock:
            self._close()


def _attributes(text: str | None, person_id: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = read_json(text, f"attributes of person {person_id!r}")
    except InputError:
        log.warning("directory.bad_attributes", person_id=person_id)
        return {}
    return value if isinstance(value, dict) else {}


def open_directory(path: Path | None) -> PersonDirectory:
    return SqliteDirectory(path) if path is not None else NoDirectory()


class Directories:
    """The directory of each gallery the relay serves (a gallery's own, else the relay's ``directory.path``;
    None where neither is set). Galleries sharing a file share one :class:`SqliteDirectory`."""

    def __init__(self, paths: Mapping[str, Path | None], default: Path | None) -> None:
        opened: dict[Path, SqliteDirectory] = {}

        def one(path: Path | None) -> SqliteDirectory | None:
            if path is None:
                return None
            return opened.setdefault(path, SqliteDirectory(path))

        self._default = one(default)
        self._by_gallery = {gallery: one(path) for gallery, path in paths.items()}
        self._all = list(opened.values())

    @classmethod
    def single(cls, directory: PersonDirectory | None) -> Directories:
        """One directory for every gallery (tests, tools): a :class:`SqliteDirectory` or none."""
        out = cls({}, None)
        if isinstance(directory, SqliteDirectory):
            out._default, out._all = directory, [directory]
        return out

    def of(self, gallery_id: str | None) -> SqliteDirectory | None:
        """The directory that speaks for ``gallery_id`` (events without one belong to ``default``)."""
        return self._by_gallery.get(gallery_id or "default", self._default)

    def lookup(self, person_id: str, gallery_id: str | None = None) -> PersonDetails | None:
        directory = self.of(gallery_id)
        return directory.lookup(person_id) if directory is not None else None

    def close(self) -> None:
        for directory in self._all:
            directory.close()
