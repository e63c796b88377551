"""The durable outbox: every event is on disk before it is sent, and leaves only when acknowledged.

SQLite in WAL mode with ``synchronous=FULL``: when :meth:`Outbox.add` returns, the
event survives a crash (kill -9) or power loss. :class:`OutboxSender` hands events to
the publisher oldest first while it is connected, with a bounded number in flight,
and deletes each one when the broker acknowledges it (PUBACK). Events already handed
to the publisher are its to retransmit after a reconnect (paho resends unacknowledged
QoS 1 messages itself, in order); after a restart everything still in the outbox is
sent again. Delivery is therefore at-least-once; subscribers drop repeated event ids.

Each match event is numbered the first time it is handed to the broker (:meth:`Outbox.number`; field
``seq``: ``stream``, an id made once per outbox file, and ``n``, one more than the last number given, kept
in ``meta`` in the same transaction as the numbered payload, never reused; a resend carries the same
number): the count survives restarts, so the relay can tell events lost on the way (gaps) from duplicates,
reordering and restarts. Rows the device drops on purpose before sending them (the outbox full, a
withdrawal: counted in ``lookout_events_dropped_total``) take no number, so they are no gap at the relay
(attack finding A38); nor do rows the relay never receives (Home Assistant's copies, ``sequenced=False``,
attack finding A14).

Each row carries the event's expiry: a row past it is counted and logged as stale
when it is finally sent (the event itself says ``expires_at``, so subscribers can
show it as old news). Nothing is dropped for being stale; the outbox is capped at
``max_events`` rows, oldest dropped first, with a warning.

Each row also carries the person it is about (``person_id``) and the enrolled photos its
match rests on (``photo_ids``), so that a withdrawal that reached the device also reaches
what waits here: :meth:`Outbox.drop_rows` deletes the rows (crop included) about anyone, or
resting on any photo, the gallery in use no longer holds, and the sender asks
``admit`` about each row before it goes out. Every drop is reported to ``on_dropped(reason,
event_ids)`` (reasons ``outbox_full``, ``withdrawn``) for the device's metrics. Deleted rows
are overwritten on disk (``secure_delete``): a withdrawn person's crop does not linger in free pages.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from lookout.device.publisher import EventPublisher
from lookout.errors import ConfigError, InputError
from lookout.events import read_json
from lookout.log import get_logger

log = get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_sent_at REAL,
    stale INTEGER NOT NULL DEFAULT 0,
    person_id TEXT,
    photo_ids TEXT,
    sequenced INTEGER NOT NULL DEFAULT 1,
    photo_sha256 TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def with_sequence(payload: bytes, stream: str, n: int) -> bytes:
    """``payload`` with ``"seq": {"stream", "n"}`` added, if it is a match event without one."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return payload
    if not isinstance(doc, dict) or "event_id" not in doc or "seq" in doc:
        return payload
    doc["seq"] = {"stream": stream, "n": n}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _needs_number(payload: bytes) -> bool:
    """A match event (it has an ``event_id``) not numbered yet."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "event_id" in doc and "seq" not in doc


def person_in(payload: bytes) -> str | None:
    """The ``person_id`` an event payload names (rows written before the column existed), or None."""
    try:
        doc = read_json(payload, "outbox row")
    except InputError:
        return None
    person_id = doc.get("person_id") if isinstance(doc, dict) else None
    return person_id if isinstance(person_id, str) else None


# Why events were dropped unsent (the label of lookout_events_dropped_total).
DROPPED_FULL = "outbox_full"
DROPPED_WITHDRAWN = "withdrawn"

DropCallback = Callable[[str, list[str]], None]  # (reason, event ids)
# The sender's question about a row: True send it, False drop it (withdrawn), None not now (keep it).
AdmitCallback = Callable[["OutboxRow"], "bool | None"]


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    event_id: str
    topic: str
    payload: bytes
    created_at: float
    expires_at: float
    attempts: int
    person_id: str | None = None
    photo_ids: tuple[str, ...] = ()  # the enrolled photos the match rests on
    photo_sha256: tuple[str, ...] = ()  # their content digests, in the same order ("" where unknown)


class Outbox:
    """A thread-safe SQLite queue of events (one connection, one lock)."""

    def __init__(self, path: Path, max_events: int = 100_000, on_dropped: DropCallback | None = None) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.on_dropped = on_dropped
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(SCHEMA)
            self._migrate()
            self.stream = self._stream()
        except (sqlite3.Error, OSError) as err:
            raise ConfigError(f"outbox.path: cannot open {self.path}: {err}") from None
        self._lock = threading.Lock()
        self.dropped = 0
        self.stale_sent = 0

    def _migrate(self) -> None:
        """Outbox files written before rows named their person get the column (NULL: read from the payload)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        for column in ("person_id", "photo_ids", "photo_sha256"):
            if column not in columns:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {column} TEXT")
        if "sequenced" not in columns:
            self._db.execute("ALTER TABLE outbox ADD COLUMN sequenced INTEGER NOT NULL DEFAULT 1")
        if self._db.execute("SELECT value FROM meta WHERE key='numbering'").fetchone() is None:
            # Files from before numbering at send time: their queued rows are numbered already; files without a
            # counter numbered rows by their row number, so the stream goes on from the last row.
            last = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            if last is not None:
                self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('last_n', ?)", (str(last[0]),))
            self._db.execute("INSERT INTO meta (key, value) VALUES ('numbering', 'at_send')")

    def _stream(self) -> str:
        """This outbox file's sequence stream id, made once and kept."""
        row = self._db.execute("SELECT value FROM meta WHERE key='stream'").fetchone()
        if row is not None:
            return str(row[0])
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('stream', ?)", (secrets.token_hex(8),))
        return str(self._db.execute("SELECT value FROM meta WHERE key='stream'").fetchone()[0])

    def add(
        self,
        event_id: str,
        topic: str,
        payload: bytes,
        expires_at: float,
        created_at: float | None = None,
        person_id: str | None = None,
        sequenced: bool = True,
        photo_ids: tuple[str, ...] = (),
        photo_sha256: tuple[str, ...] = (),
    ) -> int:
        """Store an event durably; returns its row's place in the queue. A repeated event id is ignored.
        ``person_id``: whom the event is about, ``photo_ids``: the enrolled photos its match rests on (dropped if
        either is withdrawn; ``photo_sha256``: their content digests, so a photo only renamed in the source still
        counts). ``sequenced``: number it in the
        relay's stream (``seq``); False for copies on topics the relay does not read."""
        dropped: list[str] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._insert(
                    event_id,
                    topic,
                    payload,
                    expires_at,
                    created_at or time.time(),
                    person_id,
                    sequenced,
                    photo_ids,
                    photo_sha256,
                )
                over = self._count() - self.max_events
                if over > 0:
                    oldest = "SELECT seq FROM outbox ORDER BY seq LIMIT ?"
                    dropped = [
                        r[0] for r in self._db.execute(f"SELECT event_id FROM outbox WHERE seq IN ({oldest})", (over,))
                    ]
                    self._db.execute(f"DELETE FROM outbox WHERE seq IN ({oldest})", (over,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        if dropped:
            self.dropped += len(dropped)
            log.warning("outbox.full", dropped=len(dropped), max_events=self.max_events)
            self._report(DROPPED_FULL, dropped)
        return seq

    def _insert(
        self,
        event_id: str,
        topic: str,
        payload: bytes,
        expires_at: float,
        created_at: float,
        person_id: str | None,
        sequenced: bool,
        photo_ids: tuple[str, ...] = (),
        photo_sha256: tuple[str, ...] = (),
    ) -> int:
        row = self._db.execute("SELECT seq FROM outbox WHERE event_id = ?", (event_id,)).fetchone()
        if row is not None:
            return int(row[0])
        last = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        seq = (int(last[0]) if last else 0) + 1
        self._db.execute(
            "INSERT INTO outbox (seq, event_id, topic, payload, created_at, expires_at, person_id, photo_ids, "
            "sequenced, photo_sha256) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                seq,
                event_id,
                topic,
                payload,
                created_at,
                expires_at,
                person_id,
                json.dumps(list(photo_ids)),
                sequenced,
                json.dumps(list(photo_sha256)),
            ),
        )
        return seq

    def number(self, row: OutboxRow) -> OutboxRow | None:
        """``row`` as it goes out: a match event gets its sequence number the first time (kept in the row, so a
        resend carries the same one); None when the row is gone (acknowledged or dropped meanwhile)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._db.execute("SELECT payload, sequenced FROM outbox WHERE seq = ?", (row.seq,)).fetchone()
                payload: bytes | None = bytes(found[0]) if found is not None else None
                if payload is not None and found[1] and _needs_number(payload):
                    payload = with_sequence(payload, self.stream, self._next_number())
                    self._db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (payload, row.seq))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return None if payload is None else replace(row, payload=payload)

    def _next_number(self) -> int:
        """The next ``seq.n`` of the stream, kept in ``meta`` (inside the caller's transaction)."""
        row = self._db.execute("SELECT value FROM meta WHERE key='last_n'").fetchone()
        n = int(row[0]) + 1 if row is not None else 1
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_n', ?)", (str(n),))
        return n

    def pending(self, limit: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[OutboxRow]:
        """Oldest first, skipping sequence numbers in ``exclude`` (already in flight)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {ROW_COLUMNS} FROM outbox ORDER BY seq LIMIT ?",
                (limit + len(exclude),),
            ).fetchall()
        return [_row(r) for r in rows if r[0] not in exclude][:limit]

    def drop_rows(self, keep: Callable[[OutboxRow], bool]) -> list[str]:
        """Delete every row for which ``keep(row)`` is False (a withdrawal reached the device: its person, or a
        photo its match rests on, is no longer in the gallery); returns the dropped event ids."""
        with self._lock:
            rows = [_row(r) for r in self._db.execute(f"SELECT {ROW_COLUMNS} FROM outbox").fetchall()]
            gone = [row for row in rows if not keep(row)]
            if gone:
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(row.seq,) for row in gone])
        dropped = [row.event_id for row in gone]
        if dropped:
            self._report(DROPPED_WITHDRAWN, dropped)
        return dropped

    def drop(self, seq: int, event_id: str, reason: str) -> None:
        """Delete one row unsent, for ``reason``."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        self._report(reason, [event_id])

    def _report(self, reason: str, event_ids: list[str]) -> None:
        if self.on_dropped is not None:
            self.on_dropped(reason, event_ids)

    def mark_sent(self, seq: int, now: float, stale: bool) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_sent_at = ?, stale = ? WHERE seq = ?",
                (now, int(stale), seq),
            )

    def remove(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def _count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def count(self) -> int:
        with self._lock:
            return self._count()

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()


ROW_COLUMNS = "seq, event_id, topic, payload, created_at, expires_at, attempts, person_id, photo_ids, photo_sha256"


def _row(r: tuple) -> OutboxRow:
    seq, event_id, topic, payload, created_at, expires_at, attempts, person_id, photo_ids, photo_sha256 = r
    photos = tuple(str(p) for p in json.loads(photo_ids)) if photo_ids else ()
    digests = tuple(str(d) for d in json.loads(photo_sha256)) if photo_sha256 else ()
    person = person_id or person_in(payload)
    return OutboxRow(seq, event_id, topic, payload, created_at, expires_at, attempts, person, photos, digests)


# A row the sender may not judge yet (no gallery in use) is asked about again after this long.
HOLD_S = 1.0


class OutboxSender:
    """A thread moving outbox rows to the publisher; rows are removed on acknowledgement.

    ``admit(row)``, when given, is asked before each row goes out: True sends it, False drops it
    (its person was withdrawn: nothing about them leaves the device), None keeps it for later."""

    def __init__(
        self,
        outbox: Outbox,
        publisher: EventPublisher,
        *,
        inflight: int = 20,
        retry_s: float = 10.0,
        on_delivered=None,
        admit: AdmitCallback | None = None,
        on_stale: Callable[[OutboxRow], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.publisher = publisher
        self.max_inflight = inflight
        self.retry_s = retry_s
        self.on_delivered = on_delivered  # callback(row, ack_time) for latency metrics
        self.admit = admit
        self.on_stale = on_stale  # callback(row) for each row sent after its expiry (metrics)
        self._inflight: dict[int, OutboxRow] = {}
        self._retry_after: dict[int, float] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.delivered = 0

    def start(self) -> OutboxSender:
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    @property
    def inflight(self) -> int:
        with self._cond:
            return len(self._inflight)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                self._cond.wait(timeout=0.5)
                if self._stop:
                    return
            try:
                self._send_some()
            except Exception as err:  # keep the sender alive; the rows stay in the outbox
                log.error("outbox.send_failed", error=repr(err))
                time.sleep(1)

    def _send_some(self) -> None:
        if not self.publisher.connected:
            return
        now = time.time()
        with self._cond:
            room = self.max_inflight - len(self._inflight)
            busy = set(self._inflight) | {s for s, t in self._retry_after.items() if t > now}
        if room <= 0:
            return
        for row in self.outbox.pending(room, busy):
            verdict = True if self.admit is None else self.admit(row)
            if verdict is None:
                with self._cond:
                    self._retry_after[row.seq] = now + HOLD_S
                continue
            if not verdict:
                self.outbox.drop(row.seq, row.event_id, DROPPED_WITHDRAWN)
                log.info(
                    "outbox.withdrawn_dropped", event_id=row.event_id, why="the gallery no longer holds its person"
                )
                continue
            numbered = self.outbox.number(row)  # its sequence number, the first time it goes out
            if numbered is None:
                continue
            row = numbered
            stale = row.expires_at <= now
            if stale:
                self.outbox.stale_sent += 1
                log.warning("outbox.stale", event_id=row.event_id, age_s=round(now - row.created_at, 1))
                if self.on_stale is not None:
                    self.on_stale(row)
            with self._cond:
                self._inflight[row.seq] = row
                self._retry_after.pop(row.seq, None)
            ok = self.publisher.publish(row.topic, row.payload, qos=1, on_ack=partial(self._acked, row))
            if not ok:
                with self._cond:
                    self._inflight.pop(row.seq, None)
                break
            self.outbox.mark_sent(row.seq, now, stale)

    def _acked(self, row: OutboxRow, ok: bool, reason: str = "") -> None:
        """Called by the publisher (its thread) when the broker acknowledged or refused ``row``."""
        if ok:
            self.outbox.remove(row.seq)
            self.delivered += 1
            if self.on_delivered:
                self.on_delivered(row, time.time())
        else:
            log.warning("outbox.refused", event_id=row.event_id, reason=reason, retry_in_s=self.retry_s)
        with self._cond:
            self._inflight.pop(row.seq, None)
            if not ok:
                self._retry_after[row.seq] = time.time() + self.retry_s
            self._cond.notify()

    def flush(self, timeout: float, abort: threading.Event | None = None) -> bool:
        """Wait until the outbox is empty (True) or ``timeout`` passes or ``abort`` is set (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (abort is not None and abort.is_set()):
            if self.outbox.count() == 0:
                return True
            self.wake()
            time.sleep(0.05)
        return self.outbox.count() == 0

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
