"""The relay store on both engines: migrations, what holds across relays (dedup without a race,
exclusive delivery claims, one rate-limit ledger), the append-only audit log, sequence gaps,
and the PostgreSQL configuration rules (no password in the DSN)."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta

import pytest

from lookout.errors import ConfigError, InputError
from lookout.events import utc_now
from lookout.relay.config import StoreSettings, load_config
from lookout.relay.gaps import walk
from lookout.relay.migrate import steps
from lookout.relay.records import AlertPlan, Intake, Outcome
from lookout.relay.sqlite_store import SqliteStore
from lookout.relay.store import open_store
from tests.relay_helpers import make_event

PLAN = AlertPlan(False, ["desk"])


@pytest.fixture
def store(store_settings):
    s = open_store(store_settings)
    yield s
    s.close()


def _run_together(count: int, work) -> list:
    """Run ``work(i)`` in ``count`` threads released at the same moment; their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            results[i] = work(i)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


# --- migrations ---------------------------------------------------------------------------------


def test_schema_is_migrated_to_the_latest_version(store):
    assert store.schema_version() == len(steps(store.kind))
    assert store.ping()


def test_a_store_from_before_migrations_is_adopted_and_upgraded(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(steps("sqlite")[0].sql)  # the schema of the first release
    db.execute(
        "INSERT INTO alerts(gallery_id, person_id, status, first_seen_at, last_seen_at, created_at, devices,"
        " best_score, event, reviewed_by) VALUES ('default','p','open',1,1,1,'[\"cam\"]',0.9,?,'officer-a')",
        (make_event(person_id="p").model_dump_json(),),
    )
    db.commit()
    db.close()
    store = SqliteStore(path)
    try:
        assert store.schema_version() == len(steps("sqlite"))
        assert store.get_alert(1).status == "confirmed"  # confirmed alerts no longer show as "open"
    finally:
        store.close()


def test_a_store_newer_than_the_relay_is_refused(tmp_path):
    path = tmp_path / "relay.sqlite"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version VALUES (99, 'future', 0)")
    db.commit()
    db.close()
    with pytest.raises(InputError, match="schema version 99 is newer than this relay knows"):
        SqliteStore(path)


@pytest.mark.postgres
def test_relays_starting_together_migrate_once(pg_store_settings):
    stores = _run_together(4, lambda i: open_store(pg_store_settings))
    try:
        rows = stores[0]._x("SELECT version, count(*) AS n FROM schema_version GROUP BY version ORDER BY version").rows
        assert [(r["version"], r["n"]) for r in rows] == [(s.version, 1) for s in steps("postgresql")]
    finally:
        for s in stores:
            s.close()


# --- what must hold across relays -----------------------------------------------------------------


def test_one_alert_when_relays_see_the_same_person_at_once(store):
    """Eight relays (store instances on their own threads) each get a sighting of one person, and a
    redelivery of one event, in the same instant: one alert, every other sighting folded into it."""
    t0 = utc_now()
    shared_event = make_event(person_id="p", device_id="cam-lobby", seen_at=t0)
    relays = [store.sibling() for _ in range(8)]

    def ingest(i: int):
        own = make_event(person_id="p", device_id=f"cam-{i}", seen_at=t0 + timedelta(seconds=i))
        return relays[i].ingest([Intake(own, PLAN), Intake(shared_event, PLAN)], time.time(), 60)

    try:
        results = [r.outcome for batch in _run_together(8, ingest) for r in batch]
    finally:
        for r in relays:
            r.close()
    assert results.count(Outcome.NEW_ALERT) == 1
    assert results.count(Outcome.FOLLOW_UP) == 8
    assert results.count(Outcome.DUPLICATE) == 7
    (alert,) = store.alerts(None, 10)
    assert alert.sightings == 9 and len(alert.devices) == 9


def test_delivery_claims_are_exclusive_across_relays(store):
    now = time.time()
    store.ingest([Intake(make_event(person_id=f"p{i}"), PLAN) for i in range(60)], now, 60)
    relays = [store.sibling() for _ in range(3)]
    claimed: list[list[int]] = [[], [], []]

    def claim(i: int) -> None:
        while True:
            with relays[i].claim_due(now + 1, 7, f"relay-{i}", 60) as due:
                if not due:
                    return
                claimed[i] += [d.id for d in due]
                time.sleep(0.01)  # "sending"
                with relays[i].transaction():
                    for d in due:
                        relays[i].mark_sent(d.id, now, "ok")

    try:
        _run_together(3, claim)
    finally:
        for r in relays:
            r.close()
    every = [d for ids in claimed for d in ids]
    assert sorted(every) == list(range(1, 61))  # each delivery once, none left
    assert store.counts() == {"sent": 60}


def test_a_dead_relays_sqlite_claim_is_taken_over_after_its_lease(tmp_path):
    store = SqliteStore(tmp_path / "relay.sqlite")
    try:
        now = time.time()
        store.ingest([Intake(make_event(), PLAN)], now, 60)
        with store.claim_due(now, 10, "relay-a", 30) as due:
            assert len(due) == 1  # relay-a dies holding it
        with store.claim_due(now + 10, 10, "relay-b", 30) as due:
            assert due == []
        with store.claim_due(now + 31, 10, "relay-b", 30) as due:
            assert [d.id for d in due] == [1]
        assert store.release_claims("relay-b") == 1  # a restart under the same id gives them back at once
    finally:
        store.close()


# --- audit ----------------------------------------------------------------------------------------


def test_review_decisions_are_audited_and_the_audit_is_append_only(store):
    now = time.time()
    (first,) = store.ingest([Intake(make_event(person_id="a"), AlertPlan(True, ["desk"]))], now, 60)
    (second,) = store.ingest([Intake(make_event(person_id="b"), AlertPlan(True, ["desk"]))], now, 60)
    store.confirm(first.alert_id, "officer-a", now, "matches the case photo")
    store.reject(second.alert_id, "officer-b", "not this person", now, now + 60)
    store.audit("volunteer-c", "search.photo", "gallery:city-pd", "complaint 17", {"candidates": 3})
    log = store.audit_log()
    assert [(e.actor, e.action, e.subject) for e in log] == [
        ("volunteer-c", "search.photo", "gallery:city-pd"),
        ("officer-b", "review.reject", f"alert:{second.alert_id}"),
        ("officer-a", "review.confirm", f"alert:{first.alert_id}"),
    ]
    assert log[1].reason == "not this person" and log[1].details["suppressed_devices"] == ["cam-1"]
    assert [e.action for e in store.audit_log(action="review.")] == ["review.reject", "review.confirm"]
    assert store.get_alert(first.alert_id).status == "confirmed"
    for statement in ("UPDATE audit SET actor='someone else'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"), store.transaction():
            store._x(statement)
    assert len(store.audit_log()) == 3


# --- sequence gaps --------------------------------------------------------------------------------


def test_gap_walk_waits_for_late_events_and_ignores_duplicates():
    rows = [("cam", "s", 1, 10.0), ("cam", "s", 2, 11.0), ("cam", "s", 5, 12.0), ("cam", "s", 9, 50.0)]
    gaps, checked = walk(rows, settled_before=20.0)
    assert [(g.first, g.last) for g in gaps] == [(3, 4)]  # 6..8 may still come: the 9 arrived too recently
    assert checked == {("cam", "s"): 5}


def test_gaps_are_reported_once_per_missing_range(store):
    now = time.time()
    numbers = [1, 2, 4, 3, 3, 7, 8]  # 3 late (out of order) and repeated: not gaps; 5-6 never arrive
    events = [make_event(seq={"stream": "outbox-1", "n": n}) for n in numbers]
    events.append(make_event(device_id="cam-2", seq={"stream": "other", "n": 40}))  # a stream's start: no gap
    store.ingest([Intake(e, PLAN) for e in events], now, 60)
    assert store.find_gaps(now + 10, 120, now - 600) == []  # still within the grace period
    gaps = store.find_gaps(now + 200, 120, now - 600)
    assert [(g.device_id, g.first, g.last, g.missing) for g in gaps] == [("cam-1", 5, 6, 2)]
    assert store.find_gaps(now + 400, 120, now - 600) == []


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db dbname=lookout user=relay password=hunter2",
        "postgresql://relay:hunter2@db/lookout",
        "postgresql://relay@db/lookout?password=hunter2",
    ],
)
def test_a_password_in_the_dsn_is_refused(dsn):
    with pytest.raises(ValueError, match="must not contain a password"):
        StoreSettings(type="postgresql", dsn=dsn)


def test_postgresql_needs_a_dsn_and_names_the_missing_variable(tmp_path):
    config = tmp_path / "relay.yaml"
    config.write_text("store: {type: postgresql}\n")
    with pytest.raises(ConfigError, match="dsn is required"):
        load_config(config, {})
    pytest.importorskip("psycopg")
    settings = StoreSettings(type="postgresql", dsn="host=127.0.0.1 port=9 dbname=x", password_env="LOOKOUT_UNSET_PW")
    with pytest.raises(ConfigError, match="LOOKOUT_UNSET_PW is not set"):
        open_store(settings)


@pytest.mark.postgres
def test_wrong_password_fails_with_one_clear_line(pg_store_settings, monkeypatch):
    monkeypatch.setenv("LOOKOUT_WRONG_PW", "not-the-password")
    settings = pg_store_settings.model_copy(update={"password_env": "LOOKOUT_WRONG_PW", "connect_timeout_s": 2})
    with pytest.raises(
        InputError, match=r"relay store postgresql://127\.0\.0\.1:\d+/test_\w+: cannot connect: .*password"
    ):
        open_store(settings)


def test_audit_is_filtered_paged_and_counted_for_the_console(store):
    for i in range(7):
        store.audit(
            "alice" if i % 2 else "bob",
            "search.photo" if i < 5 else "gallery.withdraw",
            f"gallery:g{i}",
            f"case {i}",
            {"n": i},
            now=100.0 + i,
        )
    assert store.count_audit() == 7
    assert store.count_audit(actor="alice") == 3 and store.count_audit(action="search.") == 5
    assert [e.subject for e in store.audit_log(since=102, until=105)] == ["gallery:g4", "gallery:g3", "gallery:g2"]
    assert [e.subject for e in store.audit_log(text="CASE 6")] == ["gallery:g6"]
    assert [e.subject for e in store.audit_log(text='"n": 1')] == ["gallery:g1"]  # details are searchable
    page = store.audit_log(limit=3, offset=3)
    assert [e.subject for e in page] == ["gallery:g3", "gallery:g2", "gallery:g1"]


def test_last_match_by_device_for_the_fleet_page(store):
    t0 = utc_now()
    events = [
        make_event(person_id="a", device_id="cam-1", seen_at=t0),
        make_event(person_id="b", device_id="cam-1", seen_at=t0 + timedelta(seconds=5)),
        make_event(person_id="c", device_id="cam-2", seen_at=t0 - timedelta(seconds=5)),
    ]
    store.ingest([Intake(e, PLAN) for e in events], time.time(), 60)
    last = store.last_match_by_device()
    assert {d: p for d, (_, p) in last.items()} == {"cam-1": "b", "cam-2": "c"}
    assert last["cam-1"][0] == pytest.approx((t0 + timedelta(seconds=5)).timestamp())
