"""Attack A23: one schema-valid event with ``seen_at: 9999-12-31T23:59:59.999999Z`` stopped every delivery claimed
with it (the batch's results were never written: sent ones were sent again each lease, the rest never), and the
review list and console pages raised on its time. Now such times are refused at parse (one line, dead-lettered),
a delivery that cannot be built fails alone with its reason, and every time shown to people tolerates any
stored value. Both store engines (``store_settings``)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from lookout.errors import InputError
from lookout.events import format_utc, parse_match_event, utc_now
from lookout.relay.config import Recipient, RetrySettings
from lookout.relay.dispatch import Dispatcher, DispatchSettings
from lookout.relay.gate import Gate
from lookout.relay.metrics import Counters
from lookout.relay.ratelimit import Limits
from lookout.relay.records import AlertPlan, Intake
from lookout.relay.review import format_alert
from lookout.relay.store import open_store
from tests.relay_helpers import make_event

YEAR_10000 = 253402300799.9999999  # 9999-12-31T23:59:59.999999 as a float: rounds into year 10000


def _with_times(seen_at: str, expires_at: str) -> bytes:
    doc = make_event().model_dump(mode="json")
    doc.update(seen_at=seen_at, expires_at=expires_at)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("seen_at", "expires_at", "why"),
    [
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z", "outside 2000-01-01"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:05:00Z", "outside 2000-01-01"),
        ((utc_now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"), None, "ahead of this clock"),
        ("2025-01-01T00:05:00Z", "2025-01-01T00:00:00Z", "expires_at must be after seen_at"),
        ("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "within 30 days"),
    ],
)
def test_impossible_event_times_are_refused_in_one_line(seen_at: str, expires_at: str | None, why: str) -> None:
    expires = expires_at or seen_at
    with pytest.raises(InputError, match=why) as refused:
        parse_match_event(_with_times(seen_at, expires), "dt/lookout/cam-1/match")
    assert "\n" not in str(refused.value) and "dt/lookout/cam-1/match" in str(refused.value)


@pytest.mark.parametrize("ts", [YEAR_10000, 1e20, -1e20, float("nan"), None])
def test_times_shown_to_people_never_raise(ts: float | None) -> None:
    shown = format_utc(ts)
    assert shown == "-" if ts is None else "out of range" in shown


class Recorder:
    name = "rec"

    def __init__(self) -> None:
        self.sent: list = []

    def send(self, message):
        self.sent.append(message)
        return f"id-{len(self.sent)}"

    def close(self) -> None:
        pass


@pytest.fixture
def store(store_settings):
    s = open_store(store_settings)
    yield s
    s.close()


def test_an_alert_with_a_stored_time_out_of_range_stops_nothing_else(store) -> None:
    """What was stored before the parse refused such times: the other deliveries go out once, the list renders."""
    now = time.time()
    ids = [
        store.ingest([Intake(make_event(person_id=p), AlertPlan(False, ["desk"]))], now, 60.0)[0].alert_id
        for p in ("sheldon", "bernadette", "howard")
    ]
    store._run("UPDATE alerts SET first_seen_at=?, last_seen_at=? WHERE id=?", (YEAR_10000, YEAR_10000, ids[1]))
    settings = DispatchSettings(RetrySettings(initial_s=1, max_s=8), Limits(None, None))
    recorder = Recorder()
    recipients = [Recipient(name="desk", notifier="rec", address="+15555550123")]
    dispatcher = Dispatcher(store, {"rec": recorder}, recipients, Gate.unchecked(), settings, Counters())
    dispatcher.step()
    dispatcher.step()
    assert sorted(m.document["person_id"] for m in recorder.sent) == ["bernadette", "howard", "sheldon"]
    assert store.counts() == {"sent": 3}
    assert "out of range" in format_alert(store.get_alert(ids[1]))


def test_a_delivery_that_cannot_be_built_fails_alone_with_its_reason(store, monkeypatch) -> None:
    now = time.time()
    for person in ("sheldon", "raj", "howard"):
        store.ingest([Intake(make_event(person_id=person), AlertPlan(False, ["desk"]))], now, 60.0)
    settings = DispatchSettings(RetrySettings(initial_s=1, max_s=8), Limits(None, None))
    recorder = Recorder()
    recipients = [Recipient(name="desk", notifier="rec", address="+15555550123")]
    dispatcher = Dispatcher(store, {"rec": recorder}, recipients, Gate.unchecked(), settings, Counters())
    build = dispatcher._message

    def broken_for_raj(delivery, alert, *rest):
        if alert.person_id == "raj":
            raise ValueError("year 10000 is out of range")
        return build(delivery, alert, *rest)

    monkeypatch.setattr(dispatcher, "_message", broken_for_raj)
    dispatcher.step()
    dispatcher.step()
    assert sorted(m.document["person_id"] for m in recorder.sent) == ["howard", "sheldon"]
    assert store.counts() == {"sent": 2, "failed": 1}
    [failed] = [d for a in store.alerts(None, 10) for d in store.deliveries_of(a.id) if d.status == "failed"]
    assert "cannot deliver: ValueError: year 10000 is out of range" in (failed.last_error or "")
