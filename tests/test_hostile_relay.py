"""Hostile input at the relay and the other MQTT/HTTP readers of network JSON (attack finding A11).

One 5 KB match event, ``{"track_length": 999...9}`` (5,000 digits), made ``json.loads`` raise ValueError
("Exceeds the limit (4300 digits) for integer string conversion"), which nothing caught: the relay's intake
thread ended, and after every restart the broker redelivered the unacknowledged message (a poison pill). The
promise kept here: a hostile message is refused in one line naming the topic, the device and the reason,
dead-lettered and acknowledged; and whatever the relay's own code fails on for one message (a future parser or
directory bug) is set aside the same way, counted as ``poison``, while the rest of the batch goes on.
"""

from __future__ import annotations

import json
import logging
import threading

import paho.mqtt.client as paho
import pytest

from lookout.console.fleet import FleetWatcher
from lookout.device.tail import tail
from lookout.errors import InputError
from lookout.events import parse_match_event, read_json, read_json_object
from lookout.gallery.format import BundleError, parse_manifest
from lookout.http_client import FetchError
from lookout.mqtt import MqttSettings
from lookout.relay.config import RelayConfig, load_config
from lookout.relay.records import Outcome
from lookout.relay.service import RelayService
from lookout.sync.sources.http_api import ApiConfig, HttpApiSource
from lookout.topics import Topics
from tests.helpers import Subscriber, wait_for
from tests.relay_helpers import NO_GATE, make_event, publish, write_config

TOPIC = Topics().match("cam-x")
HOSTILE = {
    "5000-digit integer": b'{"track_length": ' + b"9" * 5000 + b"}",
    "5000-digit integer in a list": b"[" + b"1" * 5000 + b"]",
    "5000-digit float exponent": b'{"score": 1e' + b"9" * 5000 + b"}",
    "5000-digit integer in a valid event": b"",  # filled in below: every field right but one
}


def _valid_with_huge_int() -> bytes:
    doc = json.loads(make_event(device_id="cam-x").to_json())
    text = json.dumps({**doc, "track_length": 0})
    return text.replace('"track_length": 0', '"track_length": ' + "9" * 5000).encode()


HOSTILE["5000-digit integer in a valid event"] = _valid_with_huge_int()


# --- the parser (adopted from the attacker's test, /work/coord/attack-tests/test_attack_relay_poison.py) -------


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_numbers_are_one_clear_refusal(payload):
    with pytest.raises(InputError) as caught:
        parse_match_event(payload, source=f"message on {TOPIC}")
    assert TOPIC in str(caught.value) and len(str(caught.value)) < 400  # names the input; never echoes it


# --- the intake: one message is refused, the batch and the thread go on ----------------------------------------


@pytest.fixture
def service(store_settings):
    svc = RelayService(RelayConfig(store=store_settings, policy=NO_GATE), notifiers={})
    yield svc
    svc.stop()


def _message(payload: bytes, topic: str = TOPIC) -> paho.MQTTMessage:
    message = paho.MQTTMessage(topic=topic.encode())
    message.payload = payload
    return message


def logged(caplog, event: str) -> list[dict]:
    """The fields of each structured log line ``event`` captured by ``caplog``."""
    return [getattr(r, "lookout_fields", {}) for r in caplog.records if r.getMessage() == event]


def _outcomes(decided) -> list[Outcome | None]:
    return [accepted[1].outcome if accepted else None for _, accepted, *_ in decided]


def test_a_poison_number_in_a_batch_is_dead_lettered_and_the_rest_stored(service, caplog):
    batch = [
        _message(make_event(device_id="cam-x", person_id="p-1").to_json()),
        _message(HOSTILE["5000-digit integer in a valid event"]),
        _message(make_event(device_id="cam-x", person_id="p-2").to_json()),
    ]
    with caplog.at_level(logging.WARNING):
        decided = service._accept(batch)
    assert _outcomes(decided) == [Outcome.NEW_ALERT, None, Outcome.NEW_ALERT]
    assert "not JSON" in decided[1][2] and "4300" in decided[1][2]
    counts = service.counters.snapshot()
    assert counts["invalid"] == 1 and counts["alerts"] == 2 and counts["poison"] == 0
    [line] = logged(caplog, "event.invalid")
    assert line["topic"] == TOPIC and line["device_id"] == "cam-x" and "4300" in line["reason"]


def test_a_parser_bug_is_poison_for_one_message_not_for_the_relay(service, monkeypatch, caplog):
    """Whatever the relay's own code raises for one message: that message is set aside (counted, logged,
    dead-lettered, acknowledged), the others of its batch are stored."""
    parse = service._parse

    def buggy(topic: str, payload: bytes):
        if b"p-bug" in payload:
            raise KeyError("a bug nobody has written yet")
        return parse(topic, payload)

    monkeypatch.setattr(service, "_parse", buggy)
    batch = [_message(make_event(device_id="cam-x", person_id=p).to_json()) for p in ("p-1", "p-bug", "p-2")]
    with caplog.at_level(logging.WARNING):
        decided = service._accept(batch)
    assert _outcomes(decided) == [Outcome.NEW_ALERT, None, Outcome.NEW_ALERT]
    assert decided[1][2].startswith("internal error: KeyError")
    counts = service.counters.snapshot()
    assert counts["poison"] == 1 and counts["invalid"] == 1 and counts["alerts"] == 2
    [line] = logged(caplog, "event.poison")
    assert line["device_id"] == "cam-x" and "a bug nobody has written yet" in line["reason"]


def test_a_bug_after_parsing_is_narrowed_to_the_message_at_fault(service, monkeypatch):
    """A failure outside the per-message parse (here: planning the alert) breaks the batch; intake retries it
    one message at a time, so only the message at fault is set aside."""
    plan = service._plan

    def buggy(event, verdict):
        if event.person_id == "p-bug":
            raise RuntimeError("directory exploded")
        return plan(event, verdict)

    monkeypatch.setattr(service, "_plan", buggy)
    batch = [_message(make_event(device_id="cam-x", person_id=p).to_json()) for p in ("p-1", "p-bug", "p-2")]
    decided = service._accept(batch)
    assert _outcomes(decided) == [Outcome.NEW_ALERT, None, Outcome.NEW_ALERT]
    assert service.counters.snapshot()["poison"] == 1
    assert {a.person_id for a in service.intake_store.alerts(None, 10)} == {"p-1", "p-2"}


@pytest.mark.broker
def test_the_poison_pill_is_acknowledged_once_and_never_comes_back(tmp_path, mosquitto):
    """The attack as run: a 5 KB message on a device's match topic, then a valid event; the relay keeps a
    persistent session. The valid event is alerted, the poison dead-lettered; after a restart under the same
    client id the broker has nothing to redeliver, and the relay is ready."""
    config = load_config(write_config(tmp_path / "relay.yaml", mosquitto.port))
    letters = Subscriber(mosquitto.port, Topics().deadletter())
    first = RelayService(config, notifiers={}).start()
    try:
        assert first.connected.wait(15)
        publish(mosquitto.port, TOPIC, [HOSTILE["5000-digit integer"], make_event(device_id="cam-x").to_json()])
        wait_for(lambda: first.counters.snapshot()["alerts"] == 1, timeout=15, what="the valid event's alert")
        assert first.readiness()[1]["intake_running"] is True
        letter = letters.first(lambda topic, doc: True, timeout=10)[1]
        assert "4300" in letter["reason"] and letter["topic"] == TOPIC
    finally:
        first.stop()
    second = RelayService(config, notifiers={}).start()
    try:
        assert second.connected.wait(15)
        publish(mosquitto.port, TOPIC, [make_event(device_id="cam-x", person_id="p-after").to_json()])
        wait_for(lambda: second.counters.snapshot()["alerts"] == 1, timeout=15, what="the event after the restart")
        assert second.counters.snapshot()["invalid"] == 0, "the poison message was redelivered"
        assert second.readiness()[0] is True
    finally:
        second.stop()
        letters.close()


def test_readiness_says_when_the_intake_thread_is_gone(service):
    """Defence behind the defence: were the intake thread ever to end, /readyz says so (a supervisor acts)."""
    service._intake = threading.Thread(target=lambda: None)
    ready, checks = service.readiness()
    assert ready is False and checks["intake_running"] is False


# --- the other readers of network JSON ----------------------------------------------------------------------


DEEP = b"[" * 60_000


@pytest.mark.parametrize(
    "payload", [DEEP, HOSTILE["5000-digit integer"], b"\xff", b"[]"], ids=["deep", "digits", "utf8", "list"]
)
def test_console_fleet_watcher_survives_any_status_or_heartbeat(payload, caplog):
    """The console's fleet page reads every device's retained status: one hostile one must not end paho's
    network thread (RecursionError escaped the watcher's handler before)."""
    watcher = FleetWatcher(MqttSettings(port=1), Topics(), offline_after_s=60)
    for kind in ("status", "heartbeat"):
        message = _message(payload, f"dt/lookout/cam-x/{kind}")
        with caplog.at_level(logging.WARNING):
            watcher._on_message(watcher.client, None, message)  # raises nothing
    assert [line["topic"] for line in logged(caplog, "fleet.bad_message")] == [
        "dt/lookout/cam-x/status",
        "dt/lookout/cam-x/heartbeat",
    ]
    good = {"schema_version": "1", "device_id": "cam-x", "state": "online", "at": "2026-01-01T00:00:00Z"}
    watcher._on_message(watcher.client, None, _message(json.dumps(good).encode(), "dt/lookout/cam-x/status"))
    assert watcher.devices["cam-x"].state == "online"


def test_http_api_source_refuses_a_5000_digit_number_as_not_json():
    source = HttpApiSource(ApiConfig(url_template="http://127.0.0.1:1/c/{id}"))
    source.client.get = lambda url, accept=None: HOSTILE["5000-digit integer"]  # type: ignore[method-assign]
    with pytest.raises(FetchError, match="not JSON"):
        source.fetch(1)


def test_bundle_manifest_with_a_5000_digit_number_is_a_bundle_error():
    with pytest.raises(BundleError, match="not JSON"):
        parse_manifest(b'{"format": "lookout-gallery", "version": ' + b"9" * 5000 + b"}", "publish")


@pytest.mark.slow  # tail listens for its whole 3 s timeout
def test_events_tail_skips_a_deeply_nested_status(mosquitto, capsys):
    """``lookout events tail`` prints what it can read and says what it skipped (a retained status here)."""
    publish(mosquitto.port, "dt/lookout/cam-x/status", [DEEP], retain=True)
    assert tail(MqttSettings(port=mosquitto.port), prefix="dt/lookout", timeout=3) == 0
    assert "skipped invalid message" in capsys.readouterr().err


@pytest.mark.broker
def test_the_fleet_watcher_says_when_its_thread_stopped(mosquitto, caplog):
    """Defence behind the defence (A12): were the watcher's network thread ever to end (here: a bug in a
    callback), ``stopped`` says when and why, so the fleet page stops showing the last states as live."""
    watcher = FleetWatcher(MqttSettings(port=mosquitto.port), Topics(), offline_after_s=60).start()
    try:
        assert watcher.connected.wait(15) and watcher.running and watcher.stopped is None

        def bug(client, userdata, message):
            raise RuntimeError("a bug nobody has written yet")

        watcher.client.on_message = bug
        with caplog.at_level(logging.ERROR):
            publish(mosquitto.port, "dt/lookout/cam-x/status", [b"{}"])
            wait_for(lambda: watcher.stopped is not None, timeout=15, what="the watcher to report its stop")
        assert not watcher.running and not watcher.connected.is_set()
        assert "RuntimeError: a bug nobody has written yet" in watcher.stopped[1]
        [line] = logged(caplog, "fleet.watcher_stopped")
        assert "a bug nobody" in line["error"]
    finally:
        watcher.stop()


@pytest.mark.broker
def test_a_fleet_watcher_stopped_on_purpose_is_not_reported(mosquitto):
    watcher = FleetWatcher(MqttSettings(port=mosquitto.port), Topics(), offline_after_s=60).start()
    assert watcher.connected.wait(15)
    watcher.stop()
    assert not watcher.running and watcher.stopped is None


@pytest.mark.parametrize(
    "payload",
    [DEEP, HOSTILE["5000-digit integer"], b"\xff", b"{not json", b"[]"],
    ids=["deep", "digits", "utf8", "syntax", "list"],
)
def test_one_guard_for_every_reader_of_untrusted_json(payload):
    """lookout.events.read_json(_object): every failure of json.loads is one InputError naming the input (used by
    the relay's parser, the directory, the console's fleet watcher, events tail and the device outbox)."""
    with pytest.raises(InputError) as caught:
        read_json_object(payload, "status of cam-x")
    assert "status of cam-x" in str(caught.value) and len(str(caught.value)) < 400
    assert read_json(b'{"a": [1]}', "x") == {"a": [1]}
