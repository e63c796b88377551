"""The relay's own check of every event (attack finding A10): policy, gallery membership, withdrawals.

Found: with a directory holding amy in US-IL (a bundle built under a careless policy), the relay texted
"possible match Amy (amy)"; an event for a person the gallery does not hold was texted as "details
unavailable". The relay is the last place that can stop a face-derived alert, so it fails closed: an event
for a person in a denied (or unknown) jurisdiction, not in the newest bundle's directory, or in its
withdrawal ledger is dead-lettered with the reason and without its crop, never stored or sent; a person
withdrawn after intake is not sent either; a relay with recipients but no directory refuses to start.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import time

import pytest

from lookout.errors import ConfigError
from lookout.relay.config import RelayConfig, load_config
from lookout.relay.records import Outcome
from lookout.relay.service import RelayService
from lookout.topics import Topics
from tests.helpers import Subscriber, wait_for
from tests.relay_helpers import make_event, publish_event, write_config, write_gallery

PEOPLE = [
    {"person_id": "jane", "name": "Jane Doe", "jurisdiction": "US-CA"},
    {"person_id": "amy", "name": "Amy", "jurisdiction": "US-IL"},
    {"person_id": "nowhere", "name": "No Place", "jurisdiction": None},
    {"person_id": "gone", "name": "Withdrawn Person", "jurisdiction": "US-CA"},
]
CROP = b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"


@pytest.fixture
def gallery(tmp_path):
    return write_gallery(tmp_path / "gallery.sqlite", PEOPLE, withdrawn=("gone",))


@pytest.fixture
def service(store_settings, gallery):
    svc = RelayService(RelayConfig(store=store_settings, directory={"path": gallery}), notifiers={})
    yield svc
    svc.stop()


def logged(caplog, event: str) -> list[dict]:
    return [getattr(r, "lookout_fields", {}) for r in caplog.records if r.getMessage() == event]


@pytest.mark.parametrize(
    ("person_id", "why"),
    [
        ("amy", "US-IL denied"),
        ("nowhere", "no jurisdiction"),
        ("gone", "withdrawn from the gallery: removed by an operator"),
        ("ghost-not-in-directory", "is not in the gallery directory"),
    ],
)
def test_an_event_the_gate_refuses_is_dead_lettered_with_its_reason_and_never_stored(service, person_id, why, caplog):
    event = make_event(device_id="cam-x", person_id=person_id, crop_jpeg=CROP)
    with caplog.at_level(logging.WARNING):
        outcome = service.handle(Topics().match("cam-x"), event.to_json())
    assert outcome is None
    [line] = logged(caplog, "event.refused")
    assert line["device_id"] == "cam-x" and why in line["reason"] and person_id in line["reason"]
    assert service.intake_store.alerts(None, 10) == []
    counts = service.counters.snapshot()
    assert counts["refused"] == 1 and counts["invalid"] == 0 and counts["alerts"] == 0


def test_an_allowed_person_still_makes_an_alert(service):
    assert service.handle(Topics().match("cam-x"), make_event(device_id="cam-x", person_id="jane").to_json()) is (
        Outcome.NEW_ALERT
    )
    assert [a.person_id for a in service.intake_store.alerts(None, 10)] == ["jane"]


def test_a_relay_with_recipients_and_no_directory_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError) as caught:
        RelayService(RelayConfig(store={"path": tmp_path / "relay.sqlite"}), notifiers={})
    assert "directory.path: not set" in str(caught.value) and "policy.require_directory" in str(caught.value)
    with pytest.raises(ConfigError, match="does not exist"):
        RelayService(RelayConfig(store={"path": tmp_path / "r.sqlite"}, directory={"path": tmp_path / "no.sqlite"}))


def test_check_config_names_the_problem_and_fails(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text("store: {path: relay.sqlite}\n")
    done = subprocess.run(
        [sys.executable, "-m", "lookout", "relay", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "problem: directory.path: not set" in done.stderr


@pytest.mark.broker
def test_through_the_broker_nothing_is_sent_about_refused_people_and_a_later_withdrawal_stops_sends(
    tmp_path, mosquitto, webhook, gallery
):
    """The attack as run, end to end: events for amy (US-IL), a ghost and a withdrawn person reach the
    dead-letter topic without their crops and never the webhook; jane's alert is sent. Then a new bundle
    withdraws jane while her second alert waits for review: confirming it sends nothing."""
    config = load_config(
        write_config(
            tmp_path / "relay.yaml",
            mosquitto.port,
            directory={"path": str(gallery)},
            galleries={"default": {"purpose": "missing-persons"}, "held": {"review": True}},
            notifiers={"hook": {"type": "webhook", "url": webhook.url}},
            recipients=[{"name": "ops", "notifier": "hook"}],
        )
    )
    letters = Subscriber(mosquitto.port, Topics().deadletter())
    service = RelayService(config).start()
    try:
        assert service.connected.wait(15)
        for person in ("amy", "ghost-not-in-directory", "gone"):
            publish_event(mosquitto.port, make_event(person_id=person, crop_jpeg=CROP))
        publish_event(mosquitto.port, make_event(person_id="jane"))
        wait_for(webhook.ok, timeout=15, what="jane's alert at the webhook")
        docs = letters.wait_for(lambda msgs: len(msgs) >= 3 and msgs, timeout=15)
        letters_by_reason = [json.loads(p) for _, p, _ in docs]
        publish_event(mosquitto.port, make_event(person_id="jane", gallery_id="held", crop_jpeg=CROP))
        wait_for(lambda: service.counters.snapshot()["alerts"] == 2, timeout=15, what="jane's held alert")
        write_gallery(gallery, [p for p in PEOPLE if p["person_id"] != "jane"], withdrawn=("gone", "jane"))
        [held] = [a for a in service.intake_store.alerts(None, 10) if a.status == "review"]
        service.intake_store.confirm(held.id, "reviewer", time.time(), "looks like her")
        service.dispatcher.wake()
        wait_for(lambda: service.counters.snapshot()["refused"] == 4, timeout=15, what="the send refused")
        deliveries = service.delivery_store.deliveries_of(held.id)
        crop_after = service.intake_store.crop(held.id)
    finally:
        service.stop()
        letters.close()
    assert [json.loads(r["body"])["person_id"] for r in webhook.requests] == ["jane"]
    for letter in letters_by_reason:
        assert letter["reason"].startswith("refused by the relay's check: ")
        event = json.loads(base64.b64decode(letter["payload_b64"]))
        assert event.get("crop_jpeg_b64") is None  # the face of someone the relay may not alert about is dropped
    assert [d.status for d in deliveries] == ["failed"] and "withdrawn" in deliveries[0].last_error
    assert held.has_crop and crop_after is None  # the withdrawn person's face is deleted with the refusal
