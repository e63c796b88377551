"""Relay parts without a broker: dedup and idempotency, rate limits and summaries, directory reloads,
config validation, retention, metrics, topics and MQTT settings."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest

from lookout.errors import ConfigError, InputError
from lookout.events import utc_now
from lookout.metrics_server import MetricsServer
from lookout.mqtt import MqttSettings, TlsSettings, make_client
from lookout.relay.config import Limit, Recipient, RetrySettings, load_config
from lookout.relay.directory import SqliteDirectory
from lookout.relay.dispatch import Dispatcher, DispatchSettings, backoff_s
from lookout.relay.gate import Gate
from lookout.relay.metrics import Counters
from lookout.relay.ratelimit import Limits, Window
from lookout.relay.records import AlertPlan, Intake, Outcome
from lookout.relay.store import open_store
from lookout.topics import Topics, shared
from tests.relay_helpers import make_event, write_gallery


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Recorder:
    name = "rec"

    def __init__(self) -> None:
        self.sent = []

    def send(self, message):
        self.sent.append(message)
        return f"id-{len(self.sent)}"

    def close(self):
        pass


@pytest.fixture
def store(store_settings):
    s = open_store(store_settings)
    yield s
    s.close()


def _ingest(store, event, now=None, window=60.0, review=False):
    now = now if now is not None else event.seen_at.timestamp()
    return store.ingest([Intake(event, AlertPlan(review, ["desk"]))], now, window)[0]


# --- dedup --------------------------------------------------------------------------------------


def test_dedup_window_across_devices_and_idempotency(store):
    t0 = utc_now()
    first = make_event(person_id="p", seen_at=t0)
    assert _ingest(store, first).outcome is Outcome.NEW_ALERT
    assert _ingest(store, first).outcome is Outcome.DUPLICATE
    near = make_event(person_id="p", device_id="cam-2", seen_at=t0 + timedelta(seconds=59))
    assert _ingest(store, near).outcome is Outcome.FOLLOW_UP
    late = make_event(person_id="p", seen_at=t0 + timedelta(seconds=61))
    assert _ingest(store, late).outcome is Outcome.NEW_ALERT  # window counts from the alert's first sighting
    other = make_event(person_id="q", seen_at=t0)
    assert _ingest(store, other).outcome is Outcome.NEW_ALERT
    other_gallery = make_event(person_id="p", gallery_id="g2", seen_at=t0)
    assert _ingest(store, other_gallery).outcome is Outcome.NEW_ALERT
    alert = store.get_alert(1)
    assert (alert.sightings, alert.devices) == (2, ["cam-1", "cam-2"])
    with store.claim_due(time.time() + 120, 100, "test", 60) as due:
        assert len(due) == 4


def test_a_batch_is_decided_in_order_in_one_transaction(store):
    t0 = utc_now()
    first = make_event(person_id="p", seen_at=t0)
    batch = [first, make_event(person_id="p", device_id="cam-2", seen_at=t0 + timedelta(seconds=5)), first]
    plan = AlertPlan(False, ["desk"])
    outcomes = [r.outcome for r in store.ingest([Intake(e, plan) for e in batch], time.time(), 60)]
    assert outcomes == [Outcome.NEW_ALERT, Outcome.FOLLOW_UP, Outcome.DUPLICATE]
    assert [s.outcome for s in store.sightings(1)] == ["alert", "followup"]


def test_event_arriving_after_expiry_is_marked_late(store):
    event = make_event(ttl=timedelta(seconds=5))
    result = _ingest(store, event, now=event.seen_at.timestamp() + 600)
    assert store.get_alert(result.alert_id).stale


def test_crop_is_kept_for_review_but_not_in_the_event_copy(store, tmp_path):
    jpeg = b"\xff\xd8\xff\xe0" + b"1" * 50
    result = _ingest(store, make_event(crop_jpeg=jpeg), review=True)
    alert = store.get_alert(result.alert_id)
    assert alert.has_crop and alert.event.crop_jpeg_b64 is None
    assert store.crop(result.alert_id) == jpeg


def test_retention_purges_old_rows_but_keeps_undelivered(store):
    now = time.time()
    old = make_event(person_id="old", seen_at=utc_now() - timedelta(days=40))
    _ingest(store, old, now=now - 40 * 86400)
    stuck = make_event(person_id="stuck", seen_at=utc_now() - timedelta(days=40))
    _ingest(store, stuck, now=now - 40 * 86400)
    for d in store.deliveries_of(1):
        store.mark_sent(d.id, now - 40 * 86400, "x")
    removed = store.purge(now, 30 * 86400, 7 * 86400)
    assert removed["alerts"] == 1 and removed["history"] == 2 and removed["seen_events"] == 2
    assert store.get_alert(1) is None and store.get_alert(2) is not None


# --- dispatch: rate limits, summaries, backoff --------------------------------------------------


def _dispatcher(store, notifier, clock, per_recipient=None, overall=None, summary_after_s=60.0):
    recipients = [Recipient(name="desk", notifier="rec", address="+15555550123")]
    settings = DispatchSettings(
        RetrySettings(initial_s=1, max_s=8), Limits(per_recipient, overall), summary_after_s=summary_after_s
    )
    return Dispatcher(store, {"rec": notifier}, recipients, Gate.unchecked(), settings, Counters(), clock)


def test_rate_limit_holds_then_summarises_within_a_minute_nothing_dropped(store):
    clock = Clock(time.time())
    for i in range(5):
        _ingest(store, make_event(person_id=f"p{i}"), now=clock.t)
    rec = Recorder()
    dispatcher = _dispatcher(store, rec, clock, per_recipient=Window(2, 3600), summary_after_s=60)
    dispatcher.step()
    assert len(rec.sent) == 2
    assert dispatcher.counters.snapshot()["held_back"] == 3
    clock.t += 30
    dispatcher.step()
    assert len(rec.sent) == 2  # not yet: held alerts are gathered for a minute
    clock.t += 31
    dispatcher.step()  # the hour-long window is still full: the summary goes anyway
    assert len(rec.sent) == 3
    summary = rec.sent[-1]
    assert summary.document["type"] == "lookout.summary" and summary.document["alert_ids"] == [3, 4, 5]
    assert "3 alert(s) held back" in summary.text and "p2, p3, p4" in summary.text
    assert store.counts() == {"sent": 2, "summarised": 3}


def test_rate_limits_are_one_ledger_for_every_relay(store):
    other = store.sibling()  # a second relay on the same store
    try:
        limits = Limits(Window(2, 60), Window(3, 60))
        assert store.rate_take("a", 100.0, limits) is not None
        assert other.rate_take("a", 101.0, limits) is not None
        assert store.rate_take("a", 102.0, limits) is None  # per recipient: 2 a minute, whichever relay sent
        assert other.rate_take("b", 103.0, limits) is not None
        assert store.rate_take("c", 104.0, limits) is None  # overall: 3 a minute
        assert store.rate_take("c", 160.5, limits) is not None  # the first send left the window
        ledger = other.rate_take("b", 170.0, limits)
        other.rate_release(ledger)  # a failed send gives its place back
        assert store.rate_take("b", 170.0, limits) is not None
    finally:
        other.close()


def test_default_limits_never_hold_a_busy_day_after_a_restart(store):
    """Issue 12 item 14: 10 alerts sent before a restart, then 40 more people within five minutes."""
    cfg = load_config(None, {})
    limits = Limits(*(Window(w.count, w.per_s) for w in (cfg.rate_limits.per_recipient, cfg.rate_limits.overall)))
    t = 1_000_000.0
    for i in range(10):
        assert store.rate_take("duty", t + i, limits) is not None
    restarted = store.sibling()
    try:
        held = [i for i in range(40) if restarted.rate_take("duty", t + 60 + i * 7, limits) is None]
    finally:
        restarted.close()
    assert held == []
    assert cfg.rate_limits.summary_after_s <= 120


def test_failed_send_is_retried_with_backoff_then_given_up(store):
    clock = Clock(time.time())
    _ingest(store, make_event(), now=clock.t)

    class Failing(Recorder):
        def send(self, message):
            from lookout.relay.notifiers.base import DeliveryError

            raise DeliveryError("rec", "HTTP 503", retryable=True)

    dispatcher = _dispatcher(store, Failing(), clock)
    dispatcher.settings = DispatchSettings(RetrySettings(initial_s=1, max_s=8, give_up_after_s=100), Limits(None, None))
    dispatcher.step()
    (d,) = store.deliveries_of(1)
    assert d.status == "pending" and d.attempts == 1 and 0.8 <= d.next_attempt_at - clock.t <= 1.2
    clock.t += 200
    dispatcher.step()
    assert store.deliveries_of(1)[0].status == "failed"
    assert dispatcher.counters.snapshot()["gave_up"] == 1


def test_backoff_grows_and_is_capped():
    retry = RetrySettings(initial_s=1, max_s=10)
    assert [round(backoff_s(n, retry, jitter=0)) for n in range(6)] == [1, 2, 4, 8, 10, 10]


# --- directory ----------------------------------------------------------------------------------


def test_directory_reopens_a_replaced_bundle_file(tmp_path):
    path = write_gallery(tmp_path / "gallery.sqlite", [{"person_id": "p1", "name": "Ann", "attributes": {"age": 30}}])
    directory = SqliteDirectory(path)
    ann = directory.lookup("p1")
    assert ann.name == "Ann" and ann.attr("age") == "30"
    assert directory.lookup("nobody") is None
    write_gallery(path, [{"person_id": "p1", "name": "Ann B.", "jurisdiction": "NL"}])
    assert directory.lookup("p1").name == "Ann B."
    os.unlink(path)
    assert directory.lookup("p1") is None  # missing file: details unavailable, not a crash
    directory.close()


# --- config -------------------------------------------------------------------------------------


def test_config_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "relay.yaml"
    bad.write_text("mqtt:\n  port: lots\n")
    with pytest.raises(
        ConfigError, match=r"relay.yaml: invalid configuration:\n  mqtt.port: Input should be a valid integer"
    ):
        load_config(bad, {})
    bad.write_text("mqtt: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", {})
    bad.write_text("notifiers:\n  sms: {type: sns}\nrecipients:\n  - {name: a, notifier: sms, address: '12345'}\n")
    with pytest.raises(ConfigError, match=r"not an E\.164 phone number"):
        load_config(bad, {})
    bad.write_text("surprise: 1\n")
    with pytest.raises(ConfigError, match="surprise: Extra inputs are not permitted"):
        load_config(bad, {})


def test_env_overrides_and_relative_paths(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text("store:\n  path: state/relay.sqlite\nmqtt:\n  host: broker.example\n")
    cfg = load_config(path, {"LOOKOUT_RELAY__MQTT__PORT": "8883", "LOOKOUT_RELAY__DEDUP__WINDOW_S": "30"})
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.dedup.window_s) == ("broker.example", 8883, 30)
    assert cfg.mqtt.clean_start is False and cfg.mqtt.client_id == "lookout-relay"  # relay session defaults kept
    assert cfg.store.path == tmp_path / "state" / "relay.sqlite"
    assert cfg.gallery("nope").needs_review is False
    assert (
        load_config(None, {"LOOKOUT_RELAY__GALLERIES__DEFAULT__PURPOSE": "accountability"}).gallery(None).needs_review
    )


def test_limit_validation():
    with pytest.raises(ValueError):
        Limit(count=0, per_s=1)


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_served_as_prometheus_text():
    counters = Counters()
    counters.inc("received", 3)
    server = MetricsServer(counters.prometheus, "127.0.0.1", 0).start()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=2).read().decode()
    finally:
        server.stop()
    assert "# TYPE lookout_relay_received_total counter" in body
    assert "lookout_relay_received_total 3" in body and "lookout_relay_held_back_total 0" in body


def test_health_and_readiness_beside_metrics():
    state = {"ready": False}
    server = MetricsServer(lambda: "", readiness=lambda: (state["ready"], {"broker": state["ready"]})).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        alive = json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=2).read())
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{base}/readyz", timeout=2)
        state["ready"] = True
        ready = json.loads(urllib.request.urlopen(f"{base}/readyz", timeout=2).read())
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/nothing", timeout=2)
    finally:
        server.stop()
    assert alive == {"alive": True}
    assert not_ready.value.code == 503 and json.loads(not_ready.value.read()) == {
        "ready": False,
        "checks": {"broker": False},
    }
    assert ready == {"ready": True, "checks": {"broker": True}}
    assert missing.value.code == 404


# --- topics and MQTT settings ------------------------------------------------------------------


def test_topic_layout():
    t = Topics()
    assert t.match("cam-1") == "dt/lookout/cam-1/match"
    assert t.status("cam-1") == "dt/lookout/cam-1/status"
    assert t.heartbeat("cam-1") == "dt/lookout/cam-1/heartbeat"
    assert t.deadletter() == "dt/lookout/relay/deadletter"
    assert t.match_filter() == "dt/lookout/+/match"
    assert shared(t.match_filter(), "relays") == "$share/relays/dt/lookout/+/match"
    assert Topics("site-a/dt/lookout").match("cam-1") == "site-a/dt/lookout/cam-1/match"
    assert t.device_of("dt/lookout/cam-1/match") == "cam-1"
    assert t.device_of("dt/lookout/relay/deadletter") is None and t.device_of("other/cam/match") is None


@pytest.mark.parametrize("device", ["", "a/b", "cam+", "#", "relay", "x" * 129])
def test_bad_device_ids_are_refused(device):
    with pytest.raises(InputError):
        Topics().match(device)


@pytest.mark.parametrize("prefix", ["", "/dt", "dt/", "a//b", "$SYS/x", "dt/+/x"])
def test_bad_prefixes_are_refused(prefix):
    with pytest.raises(InputError):
        Topics(prefix)


def test_mqtt_password_comes_from_the_environment_and_is_never_described(monkeypatch):
    settings = MqttSettings(username="relay", password_env="LOOKOUT_TEST_MQTT_PW")
    with pytest.raises(ConfigError, match="LOOKOUT_TEST_MQTT_PW is not set"):
        make_client(settings)
    monkeypatch.setenv("LOOKOUT_TEST_MQTT_PW", "hunter2")
    assert settings.password() == "hunter2"
    make_client(settings)
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.describe())


def test_tls_settings_check_files(tmp_path):
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        TlsSettings(cert_file=tmp_path / "c.pem")
    settings = MqttSettings(host="broker.example", port=8883, tls=TlsSettings(ca_file=tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file"):
        make_client(settings)


# --- a crash between a send and the batch's results -----------------------------------------------


class Killed(BaseException):
    """The relay process dying (kill -9) while a notifier call is in progress: nothing after it runs."""


class DiesOnSend(Recorder):
    """Accepts ``survive`` sends, then the process 'dies' inside the next one (that message never went out)."""

    def __init__(self, survive: int) -> None:
        super().__init__()
        self.survive = survive

    def send(self, message):
        if len(self.sent) == self.survive:
            raise Killed
        return super().send(message)


def test_a_crash_mid_batch_repeats_no_send_already_accepted(store):
    """A relay dies while sending the 4th of a claimed batch of 6. Its successor (same owner, as a supervisor
    restarts it; PostgreSQL: the claim's transaction rolled back) sends each of the 6 exactly once in all: the 3
    accepted before the crash are not sent again (was: the whole batch, up to 32 SMS, repeated)."""
    for i in range(6):
        _ingest(store, make_event(person_id=f"p{i}"), now=time.time())
    dying = DiesOnSend(survive=3)
    first = store.sibling(durable=False)
    with pytest.raises(Killed):
        _dispatcher(first, dying, time.time).step()
    assert len(dying.sent) == 3
    second_store = store.sibling(durable=False)
    second_store.release_claims("relay")  # what RelayService.start does for its owner id
    again = Recorder()
    _dispatcher(second_store, again, time.time).step()
    ids = [m.delivery_id for m in dying.sent] + [m.delivery_id for m in again.sent]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6, f"repeated sends: {ids}"
    assert {d.status for a in range(1, 7) for d in store.deliveries_of(a)} == {"sent"}
    assert [d.attempts for a in range(1, 7) for d in store.deliveries_of(a)] == [1] * 6
