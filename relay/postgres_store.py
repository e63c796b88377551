""":class:`RelayStore` on PostgreSQL (psycopg 3 with a connection pool): the store a fleet of relays shares.

Everything that must hold across relays holds in the database:

- idempotency: ``INSERT INTO seen_events ... ON CONFLICT DO NOTHING``;
- sighting dedup: the batch function ``lookout_ingest`` (schema/postgresql) takes one transaction-scoped
  advisory lock per (gallery, person), in key order, before it looks for an alert to fold into; one
  round trip per batch;
- the delivery outbox: ``SELECT ... FOR UPDATE SKIP LOCKED`` in a transaction held while the claimed
  deliveries are sent and marked, so relays never send the same delivery concurrently, and a relay
  that dies (SIGKILL) releases its claims with its connection: another relay resends at most those;
- rate limits: one ledger (``sends``), counted and written under an advisory lock per recipient;
- the review queue and the append-only audit log (triggers refuse UPDATE, DELETE and TRUNCATE).

The password never comes from the config file: ``store.password_env`` names an environment variable,
or libpq finds it in its password file (``passfile=`` in the DSN, ``PGPASSFILE``, ``~/.pgpass``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import psycopg  # optional dependency: pip install 'lookout[postgresql]'
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from lookout.errors import ConfigError, InputError
from lookout.log import get_logger
from lookout.relay.config import StoreSettings
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
    Outcome,
    StoreUnavailable,
)
from lookout.relay.review_sql import ReviewSql, Row, alert_from_row, delivery_from_row

log = get_logger(__name__)

MIGRATION_LOCK = 0x6C6F6F6B6F7574  # pg_advisory_lock key held while migrating ("lookout")
GAP_SCAN_LOCK = MIGRATION_LOCK + 1  # one relay scans for sequence gaps at a time
LAST_MATCH_SQL = (
    "SELECT DISTINCT ON (device_id) device_id, seen_at, person_id FROM history ORDER BY device_id, seen_at DESC"
)
_INGEST = (
    "SELECT r_ord, r_outcome, r_alert_id, r_review FROM lookout_ingest(%s::uuid[], %s::text[], %s::text[],"
    " %s::text[], %s::float8[], %s::float8[], %s::float8[], %s::bool[], %s::text[], %s::bytea[], %s::bool[],"
    " %s::text[], %s::text[], %s::int8[], %s, %s)"
)


@dataclass(frozen=True)
class _Result:
    rows: list[dict[str, Any]]
    rowcount: int

    def one(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows else None


class PostgresStore(ReviewSql):
    """One instance per thread (it pins a pooled connection during a transaction); :meth:`sibling`
    makes another on the same pool. ``close`` on the instance from :meth:`open` closes the pool."""

    kind = "postgresql"
    text_search_function = "strpos"
    last_match_sql = LAST_MATCH_SQL
    event_id_column = "event_id::text AS event_id"

    def __init__(self, pool: ConnectionPool, where: str, owns_pool: bool, durable: bool = True) -> None:
        self._pool = pool
        self.where = where
        self._owns_pool = owns_pool
        self._durable = durable
        self._conn: psycopg.Connection[DictRow] | None = None

    @classmethod
    def open(cls, settings: StoreSettings) -> PostgresStore:
        """Open the pool, wait for the database (``connect_timeout_s``) and migrate the schema."""
        if psycopg is None:
            raise ConfigError("store.type postgresql needs psycopg: pip install 'lookout[postgresql]'")
        if not settings.dsn:
            raise ConfigError("store.dsn: required when store.type is postgresql")
        where = f"relay store {_safe_dsn(settings.dsn)}"
        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, "application_name": "lookout-relay"}
        if settings.password_env:
            password = os.environ.get(settings.password_env)
            if password is None:
                raise ConfigError(f"store.password_env: environment variable {settings.password_env} is not set")
            kwargs["password"] = password
        _try_connect(settings, kwargs, where)  # says why (password, host, database) instead of timing out
        pool = ConnectionPool(
            settings.dsn,
            kwargs=kwargs,
            min_size=1,
            max_size=settings.pool_size,
            timeout=settings.connect_timeout_s,
            open=False,
            check=ConnectionPool.check_connection,
            name="lookout-relay",
        )
        try:
            pool.open(wait=True, timeout=settings.connect_timeout_s)
        except PoolTimeout:
            pool.close()
            raise InputError(where, f"cannot connect within {settings.connect_timeout_s:g} s") from None
        store = cls(pool, where, owns_pool=True)
        try:
            store._migrate()
        except BaseException:
            pool.close()
            raise
        return store

    def sibling(self, *, durable: bool = True) -> PostgresStore:
        """Another instance on the same pool. ``durable=False``: its transactions commit with
        ``synchronous_commit=off`` (the WAL is flushed within moments, not waited for): for delivery
        bookkeeping, where a commit lost in a crash means a repeated send, never a lost alert."""
        return PostgresStore(self._pool, self.where, owns_pool=False, durable=durable)

    def _migrate(self) -> None:
        with self._checkout() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                conn.execute(VERSION_TABLE)
                applied = {r["version"] for r in conn.execute("SELECT version FROM schema_version").fetchall()}
                for step in pending("postgresql", applied, self.where):
                    with conn.transaction():
                        conn.execute(step.sql.encode())  # no parameters: several statements in one go
                        conn.execute(
                            "INSERT INTO schema_version(version, name, applied_at) VALUES (%s,%s,%s)",
                            (step.version, step.name, time.time()),
                        )
                    log.info("store.migrated", store=self.where, version=step.version, name=step.name)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def schema_version(self) -> int:
        row = self._x("SELECT max(version) AS v FROM schema_version").one()
        return int(row["v"] or 0) if row else 0

    # --- connections ------------------------------------------------------------------------

    @contextmanager
    def _checkout(self) -> Iterator[psycopg.Connection[DictRow]]:
        try:
            with self._pool.connection() as conn:
                yield cast("psycopg.Connection[DictRow]", conn)  # the pool's connections use dict_row
        except PoolTimeout as err:
            raise StoreUnavailable(f"{self.where}: no database connection: {err}") from None
        except psycopg.OperationalError as err:
            raise StoreUnavailable(f"{self.where}: {err}".strip()) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._conn is not None:  # nested: part of the outer transaction
            yield
            return
        with self._checkout() as conn:
            self._conn = conn
            try:
                with conn.transaction():
                    if not self._durable:
                        conn.execute("SET LOCAL synchronous_commit = off")
                    yield
            finally:
                self._conn = None

    def _x(self, sql: str, args: tuple | list = ()) -> _Result:
        if self._conn is not None:
            return _fetch(lambda: self._conn.execute(sql, args), self.where)  # type: ignore[union-attr]
        with self._checkout() as conn:
            return _fetch(lambda: conn.execute(sql, args), self.where)

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        return list(self._x(sql.replace("?", "%s"), args).rows)  # the shared SQL (ReviewSql) says ``?``

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        return self._x(sql.replace("?", "%s"), args).rowcount

    def _json_param(self, value: object) -> object:
        return Jsonb(value)

    def ping(self) -> bool:
        try:
            self._x("SELECT 1")
        except (StoreUnavailable, psycopg.Error):
            return False
        return True

    # --- intake -----------------------------------------------------------------------------

    def ingest(self, items: list[Intake], received_at: float, window_s: float) -> list[Ingested]:
        """The batch in one call of ``lookout_ingest`` (one transaction, one round trip)."""
        if not items:
            return []
        events = [i.event for i in items]
        args = (
            [str(e.event_id) for e in events],
            [e.device_id for e in events],
            [e.person_id for e in events],
            [i.gallery_id for i in items],
            [e.seen_at.timestamp() for e in events],
            [e.score for e in events],
            [e.margin for e in events],
            [i.stale_at(received_at) for i in items],
            [i.slim_json() for i in items],
            [e.crop_jpeg() for e in events],
            [i.plan.review for i in items],
            [json.dumps(i.plan.recipients) for i in items],
            [e.seq.stream if e.seq else None for e in events],
            [e.seq.n if e.seq else None for e in events],
            received_at,
            window_s,
        )
        with self.transaction():
            rows = self._x(_INGEST, args).rows
        out: list[Ingested] = [Ingested(Outcome.DUPLICATE)] * len(items)
        for r in rows:
            out[r["r_ord"] - 1] = Ingested(Outcome(r["r_outcome"]), r["r_alert_id"], bool(r["r_review"]))
        return out

    # --- delivery outbox --------------------------------------------------------------------

    @contextmanager
    def claim_due(self, now: float, limit: int, owner: str, lease_s: float) -> Iterator[list[Delivery]]:
        """Due deliveries locked (SKIP LOCKED) until the block ends: send and mark them inside it. Sends noted
        by a relay that died inside its claim (``delivery_sent_marks``) are marked sent first, not sent again."""
        with self.transaction():
            self._x(_FOLD_SENT_MARKS)
            rows = self._x(
                "SELECT * FROM deliveries d WHERE status='pending' AND next_attempt_at<=%s AND NOT EXISTS"
                " (SELECT 1 FROM delivery_sent_marks m WHERE m.delivery_id=d.id)"
                " ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, limit),
            ).rows
            yield [delivery_from_row(r) for r in rows]

    @contextmanager
    def claim_held(
        self, now: float, held_for_s: float, owner: str, lease_s: float
    ) -> Iterator[dict[str, list[Delivery]]]:
        with self.transaction():
            rows = self._x(
                "SELECT * FROM deliveries WHERE status='held' AND recipient IN (SELECT recipient FROM deliveries"
                " WHERE status='held' GROUP BY recipient HAVING min(held_at)<=%s) ORDER BY id FOR UPDATE SKIP LOCKED",
                (now - held_for_s,),
            ).rows
            out: dict[str, list[Delivery]] = {}
            for r in rows:
                out.setdefault(r["recipient"], []).append(delivery_from_row(r))
            yield out

    def release_claims(self, owner: str) -> int:
        return 0  # claims are row locks: they end with the connection that held them

    def alerts_by_id(self, ids: list[int]) -> dict[int, Alert]:
        if not ids:
            return {}
        rows = self._x("SELECT * FROM alerts WHERE id = ANY(%s)", (ids,)).rows
        return {r["id"]: alert_from_row(r) for r in rows}

    def record(self, results: list[DeliveryResult]) -> None:
        """Write a batch's delivery results: one statement per kind, in the claim's transaction. Sends are also
        noted at once on a connection of their own (:meth:`_note_sent`): a crash before the claim commits
        then repeats none of them."""
        sent = [r for r in results if r.kind == "sent"]
        if sent and self._conn is not None:
            self._note_sent(sent)
        statements = {
            "sent": ("UPDATE deliveries SET status='sent', sent_at=%s, provider_id=%s, attempts=attempts+1 WHERE id=%s", lambda r: (r.at, r.provider_id, r.delivery_id)),
            "retry": ("UPDATE deliveries SET attempts=attempts+1, next_attempt_at=%s, last_error=%s WHERE id=%s", lambda r: (r.at, r.error[:500], r.delivery_id)),
            "failed": ("UPDATE deliveries SET status='failed', attempts=attempts+1, last_error=%s WHERE id=%s", lambda r: (r.error[:500], r.delivery_id)),
            "held": ("UPDATE deliveries SET status='held', held_at=%s WHERE id=%s", lambda r: (r.at, r.delivery_id)),
        }  # fmt: skip
        by_kind: dict[str, list[DeliveryResult]] = {}
        for r in results:
            by_kind.setdefault(r.kind, []).append(r)
        with self.transaction():
            conn = self._conn
            assert conn is not None
            try:
                for kind, rows in by_kind.items():
                    sql, args = statements[kind]
                    with conn.cursor() as cur:
                        cur.executemany(sql, [args(r) for r in rows])
                if sent:  # the results themselves now say it (and go with the claim's commit)
                    conn.execute(
                        "DELETE FROM delivery_sent_marks WHERE delivery_id = ANY(%s)", ([r.delivery_id for r in sent],)
                    )
            except psycopg.OperationalError as err:
                raise StoreUnavailable(f"{self.where}: {err}".strip()) from None

    def _note_sent(self, sent: list[DeliveryResult]) -> None:
        """Commit marks of these sends now, outside the open claim (whose row locks and results a crash would
        roll back). A separate connection: the marks table has no foreign key, so nothing waits on the claim."""
        rows = [(r.delivery_id, r.at, r.provider_id) for r in sent]
        with self._checkout() as conn, conn.transaction():
            if not self._durable:
                conn.execute("SET LOCAL synchronous_commit = off")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO delivery_sent_marks (delivery_id, sent_at, provider_id) VALUES (%s, %s, %s)"
                    " ON CONFLICT (delivery_id) DO NOTHING",
                    rows,
                )

    def next_due_at(self) -> float | None:
        row = self._x("SELECT min(next_attempt_at) AS t FROM deliveries WHERE status='pending'").one()
        return row["t"] if row else None

    def mark_sent(self, delivery_id: int, now: float, provider_id: str) -> None:
        self._x(
            "UPDATE deliveries SET status='sent', sent_at=%s, provider_id=%s, attempts=attempts+1 WHERE id=%s",
            (now, provider_id, delivery_id),
        )

    def mark_retry(self, delivery_id: int, next_at: float, error: str) -> None:
        self._x(
            "UPDATE deliveries SET attempts=attempts+1, next_attempt_at=%s, last_error=%s WHERE id=%s",
            (next_at, error[:500], delivery_id),
        )

    def mark_failed(self, delivery_id: int, error: str) -> None:
        self._x(
            "UPDATE deliveries SET status='failed', attempts=attempts+1, last_error=%s WHERE id=%s",
            (error[:500], delivery_id),
        )

    def hold(self, delivery_id: int, now: float) -> None:
        self._x("UPDATE deliveries SET status='held', held_at=%s WHERE id=%s", (now, delivery_id))

    def mark_summarised(self, delivery_ids: list[int], now: float, provider_id: str) -> None:
        self._x(
            "UPDATE deliveries SET status='summarised', sent_at=%s, provider_id=%s WHERE id = ANY(%s)",
            (now, provider_id, delivery_ids),
        )

    # --- shared rate limits (own short transactions, so other relays see each send at once) ---

    def rate_take(self, recipient: str, now: float, limits: Limits) -> int | None:
        with self._checkout() as conn, conn.transaction():
            for key, window in ((recipient, limits.per_recipient), (OVERALL, limits.overall)):
                if window is None:
                    continue
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", ("rate\x1f" + key,))
                if key == OVERALL:
                    row = conn.execute("SELECT count(*) AS n FROM sends WHERE at>%s", (now - window.per_s,)).fetchone()
                else:
                    row = conn.execute(
                        "SELECT count(*) AS n FROM sends WHERE recipient=%s AND at>%s", (key, now - window.per_s)
                    ).fetchone()
                if row is not None and row["n"] >= window.count:
                    return None
            row = conn.execute(
                "INSERT INTO sends(recipient, at) VALUES (%s,%s) RETURNING id", (recipient, now)
            ).fetchone()
            return int(row["id"]) if row else None

    def rate_release(self, ledger_id: int) -> None:
        with self._checkout() as conn:
            conn.execute("DELETE FROM sends WHERE id=%s", (ledger_id,))

    def rate_record(self, recipient: str, now: float) -> None:
        with self._checkout() as conn:
            conn.execute("INSERT INTO sends(recipient, at) VALUES (%s,%s)", (recipient, now))

    # --- sequence gaps ----------------------------------------------------------------------

    def find_gaps(self, now: float, grace_s: float, since: float) -> list[Gap]:
        with self.transaction():
            got = self._x("SELECT pg_try_advisory_xact_lock(%s) AS ok", (GAP_SCAN_LOCK,)).one()
            if not got or not got["ok"]:
                return []  # another relay is scanning
            self._x(NEW_STREAMS.format(p="%s"), (since,))
            rows = [(r["device_id"], r["stream"], r["n"], r["received_at"]) for r in self._x(TAIL).rows]
            gaps, checked = walk(rows, now - grace_s)
            for (device, stream), n in checked.items():
                self._x("UPDATE seq_scan SET checked_n=%s WHERE device_id=%s AND stream=%s", (n, device, stream))
            for gap in gaps:
                self._x(
                    "INSERT INTO seq_gaps(device_id, stream, first_n, last_n, reported_at) VALUES (%s,%s,%s,%s,%s)"
                    " ON CONFLICT DO NOTHING",
                    (gap.device_id, gap.stream, gap.first, gap.last, now),
                )
        return gaps

    # --- retention --------------------------------------------------------------------------

    def purge(self, now: float, retention_s: float, seen_ids_s: float, sends_s: float = 86400.0) -> dict[str, int]:
        cutoff = now - retention_s
        with self.transaction():
            counts = {
                "seen_events": self._x("DELETE FROM seen_events WHERE received_at<%s", (now - seen_ids_s,)).rowcount,
                "history": self._x("DELETE FROM history WHERE received_at<%s", (cutoff,)).rowcount,
                "suppressions": self._x("DELETE FROM suppressions WHERE until<%s", (now,)).rowcount,
                "sends": self._x("DELETE FROM sends WHERE at<%s", (now - sends_s,)).rowcount,
                "device_seq": self._x("DELETE FROM device_seq WHERE received_at<%s", (now - seen_ids_s,)).rowcount,
            }
            # marks left by a relay that died are folded at the next claim; any older than this are orphans
            self._x("DELETE FROM delivery_sent_marks WHERE sent_at<%s", (now - seen_ids_s,))
            counts["alerts"] = self._x(
                "DELETE FROM alerts a WHERE created_at<%s AND status<>%s AND NOT EXISTS (SELECT 1 FROM deliveries d"
                " WHERE d.alert_id=a.id AND NOT (d.status = ANY(%s)))",
                (cutoff, ALERT_REVIEW, list(TERMINAL)),
            ).rowcount
        return counts

    def close(self) -> None:
        if self._owns_pool:
            self._pool.close()


# Sends noted by a relay that died inside its claim: mark their deliveries sent (rows another relay holds
# locked are skipped: their claim is alive and will write its own results).
_FOLD_SENT_MARKS = """
WITH marked AS (
    SELECT d.id, m.sent_at, m.provider_id FROM deliveries d JOIN delivery_sent_marks m ON m.delivery_id = d.id
    WHERE d.status = 'pending' FOR UPDATE OF d SKIP LOCKED
), folded AS (
    UPDATE deliveries SET status = 'sent', sent_at = marked.sent_at, provider_id = marked.provider_id,
        attempts = attempts + 1
    FROM marked WHERE deliveries.id = marked.id RETURNING deliveries.id
)
DELETE FROM delivery_sent_marks WHERE delivery_id IN (SELECT id FROM folded)
"""


def _fetch(run: Callable[[], psycopg.Cursor[Any]], where: str) -> _Result:
    try:
        cur = run()
        rows = cur.fetchall() if cur.description else []
        return _Result(rows, cur.rowcount)
    except psycopg.OperationalError as err:
        raise StoreUnavailable(f"{where}: {err}".strip()) from None


def _try_connect(settings: StoreSettings, kwargs: dict[str, Any], where: str) -> None:
    try:
        with psycopg.connect(settings.dsn or "", connect_timeout=max(1, int(settings.connect_timeout_s)), **kwargs):
            pass
    except psycopg.OperationalError as err:
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), "unknown error")
        raise InputError(where, f"cannot connect: {reason}") from None


def _safe_dsn(dsn: str) -> str:
    """The DSN for messages: host, port and database only."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(unparseable DSN)"
    host = parts.get("host") or "localhost"
    return f"postgresql://{host}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"
