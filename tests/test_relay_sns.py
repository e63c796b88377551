"""End to end: a device publishes on a real mosquitto; the relay sends SMS through SNS on moto_server."""

from __future__ import annotations

import base64
import json

import pytest

from lookout.relay.config import load_config
from lookout.relay.service import RelayService
from tests.helpers import Subscriber, wait_for
from tests.relay_helpers import PHONE, make_event, publish, publish_event, write_config, write_gallery

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture
def relay(tmp_path, mosquitto, moto_sns, aws_env):
    moto_sns.reset()
    gallery = write_gallery(
        tmp_path / "gallery.sqlite",
        [
            {
                "person_id": "p-001",
                "name": "Jane Doe",
                "jurisdiction": "NL",
                "attributes": {
                    "age": 34,
                    "sex": "F",
                    "date_last_seen": "2025-01-02",
                    "case_url": "https://cases.example/77",
                },
            }
        ],
    )
    path = write_config(
        tmp_path / "relay.yaml",
        mosquitto.port,
        directory={"path": str(gallery)},
        notifiers={
            "sms": {
                "type": "sns",
                "region": "eu-west-1",
                "endpoint_url": moto_sns.url,
                "sender_id": "Lookout",
                "sms_type": "Transactional",
            }
        },
        recipients=[{"name": "duty", "notifier": "sms", "address": PHONE}],
        review={"url_template": "https://lookout.example/review/{alert_id}"},
    )
    service = RelayService(load_config(path)).start()
    assert service.connected.wait(30), "relay did not connect"
    yield service
    service.stop()


def _settle(service: RelayService, received: int) -> None:
    """Wait until ``received`` events are in and every delivery is decided: nothing more will be sent."""
    wait_for(lambda: service.counters.snapshot()["received"] >= received, timeout=30)
    store = service.intake_store
    wait_for(
        lambda: all(
            d.status not in ("pending", "sending") for a in store.alerts(None, 100) for d in store.deliveries_of(a.id)
        ),
        timeout=30,
        what="every delivery sent, held or given up",
    )


def test_one_event_gives_one_sms_with_the_expected_text(relay, mosquitto, moto_sns):
    event = make_event(person_id="p-001", score=0.83)
    publish_event(mosquitto.port, event)
    sms = wait_for(moto_sns.sms, timeout=30)
    _settle(relay, 1)
    assert len(moto_sns.sms()) == 1
    assert sms[0]["phone_number"] == PHONE
    text = sms[0]["message"]
    assert text.startswith("Lookout alert #1: possible match Jane Doe (p-001, 34 F), last seen 2025-01-02.")
    assert 'at "Main St 1" ("Front door"), score 0.83.' in text
    assert event.seen_at.strftime("%Y-%m-%d %H:%M:%S UTC") in text
    assert "Case: https://cases.example/77" in text
    assert "Review: https://lookout.example/review/1" in text


def test_same_event_twice_and_second_camera_in_window_give_one_sms(relay, mosquitto, moto_sns):
    first = make_event(device_id="cam-1", person_id="p-001")
    second_camera = make_event(device_id="cam-2", person_id="p-001", device_name="Back door")
    publish_event(mosquitto.port, first)
    publish_event(mosquitto.port, first)  # at-least-once redelivery from the device
    publish_event(mosquitto.port, second_camera)
    wait_for(moto_sns.sms, timeout=30)
    _settle(relay, 3)
    counts = relay.counters.snapshot()
    assert len(moto_sns.sms()) == 1
    assert (counts["alerts"], counts["duplicates"], counts["followups"], counts["sent"]) == (1, 1, 1, 1)
    alert = relay.intake_store.get_alert(1)
    assert alert.sightings == 2 and alert.devices == ["cam-1", "cam-2"]


def test_a_person_not_in_the_gallery_is_never_texted(relay, mosquitto, moto_sns):
    """A10: the relay checks membership itself (was: "possible match person p-999 (details unavailable)")."""
    publish_event(mosquitto.port, make_event(person_id="p-999"))
    publish_event(mosquitto.port, make_event(person_id="p-001"))
    sms = wait_for(moto_sns.sms, timeout=30)
    wait_for(lambda: relay.counters.snapshot()["refused"] == 1, timeout=30, what="p-999 refused")
    assert len(sms) == 1 and "Jane Doe" in sms[0]["message"] and "p-999" not in sms[0]["message"]


def test_malformed_payload_goes_to_dead_letter_and_next_event_is_delivered(relay, mosquitto, moto_sns):
    deadletter = Subscriber(mosquitto.port, "dt/lookout/relay/deadletter")
    try:
        topic = "dt/lookout/cam-1/match"
        bad = [
            b"{not json",
            json.dumps({"schema_version": "1", "event_id": "x"}).encode(),
            make_event(device_id="cam-7").to_json(),
        ]  # valid, but on another device's topic
        publish(mosquitto.port, topic, bad)
        publish_event(mosquitto.port, make_event(person_id="p-001"))
        sms = wait_for(moto_sns.sms, timeout=30)
        wait_for(lambda: len(deadletter.messages) == 3, timeout=30)
    finally:
        deadletter.close()
    assert len(sms) == 1 and "Jane Doe" in sms[0]["message"]
    letters = [json.loads(p) for p in deadletter.payloads()]
    assert [base64.b64decode(d["payload_b64"]) for d in letters] == bad
    assert all(d["topic"] == topic and d["received_at"].endswith("Z") for d in letters)
    assert "not JSON" in letters[0]["reason"]
    assert "event_id" in letters[1]["reason"]
    assert "does not match the topic's device 'cam-1'" in letters[2]["reason"]
    counts = relay.counters.snapshot()
    assert counts["invalid"] == 3 and counts["sent"] == 1
