"""Review mode: nothing is sent until a person confirms; a rejection sends nothing and suppresses."""

from __future__ import annotations

import json
import time

import pytest

from lookout.cli import main
from lookout.relay.config import load_config
from lookout.relay.records import AlertPlan, Intake
from lookout.relay.service import RelayService
from lookout.relay.store import open_store
from tests.helpers import wait_for
from tests.relay_helpers import make_event, publish_event, write_config

pytestmark = pytest.mark.broker


@pytest.fixture
def setup(tmp_path, mosquitto):
    outbox = tmp_path / "sent.jsonl"
    config = write_config(
        tmp_path / "relay.yaml",
        mosquitto.port,
        galleries={"default": {"purpose": "missing-persons"}, "city-pd": {"purpose": "accountability"}},
        notifiers={"file": {"type": "console", "path": str(outbox)}},
        recipients=[{"name": "desk", "notifier": "file"}],
    )
    service = RelayService(load_config(config)).start()
    assert service.connected.wait(5)
    yield service, config, outbox
    service.stop()


def _sent(outbox) -> list[dict]:
    return [json.loads(line) for line in outbox.read_text().splitlines()] if outbox.exists() else []


def _review(config, *args: str) -> int:
    return main(["review", "--config", str(config), *args])


def test_nothing_is_sent_until_confirmed(setup, mosquitto, capsys):
    service, config, outbox = setup
    publish_event(mosquitto.port, make_event(person_id="p-5", gallery_id="city-pd"))
    wait_for(lambda: service.counters.snapshot()["alerts"] == 1)
    assert [d.status for d in service.intake_store.deliveries_of(1)] == ["waiting"]  # held for a person
    assert _sent(outbox) == []

    assert _review(config, "list") == 0
    listing = capsys.readouterr().out
    assert "#1" in listing and "review" in listing and "person=p-5" in listing

    assert _review(config, "confirm", "1", "--by", "officer-a") == 0
    assert "1 delivery released" in capsys.readouterr().out
    sent = wait_for(lambda: _sent(outbox), timeout=5)
    assert len(sent) == 1 and sent[0]["alert"]["person_id"] == "p-5"
    alert = service.intake_store.get_alert(1)
    assert (alert.status, alert.reviewed_by) == ("confirmed", "officer-a")
    assert _review(config, "confirm", "1") == 2  # already decided: a clear error, not a second send
    assert "not awaiting review" in capsys.readouterr().err


def test_rejection_sends_nothing_and_suppresses_the_pair(setup, mosquitto, capsys):
    service, config, outbox = setup
    publish_event(mosquitto.port, make_event(person_id="p-6", gallery_id="city-pd"))
    wait_for(lambda: service.counters.snapshot()["alerts"] == 1)

    assert _review(config, "reject", "1", "--reason", "not this person: look-alike staff member") == 0
    alert = service.intake_store.get_alert(1)
    assert alert.status == "rejected" and alert.review_reason.startswith("not this person")
    assert [d.status for d in service.intake_store.deliveries_of(1)] == ["cancelled"]

    publish_event(mosquitto.port, make_event(person_id="p-6", gallery_id="city-pd"))  # same pair again
    wait_for(lambda: service.counters.snapshot()["suppressed"] == 1)
    publish_event(mosquitto.port, make_event(person_id="p-6", gallery_id="city-pd", device_id="cam-9"))
    wait_for(lambda: service.counters.snapshot()["alerts"] == 2)  # another camera: reviewed afresh
    assert [d.status for d in service.intake_store.deliveries_of(2)] == ["waiting"]
    assert _sent(outbox) == []
    assert _review(config, "list") == 0
    assert "#2" in capsys.readouterr().out


@pytest.mark.slow
def test_missing_persons_gallery_sends_without_review(setup, mosquitto):
    _service, _config, outbox = setup
    publish_event(mosquitto.port, make_event(person_id="p-7"))
    sent = wait_for(lambda: _sent(outbox), timeout=5)
    assert sent[0]["alert"]["person_id"] == "p-7"


def test_review_commands_work_on_either_store_and_are_audited(tmp_path, store_settings, capsys):
    config = tmp_path / "relay.yaml"
    config.write_text(json.dumps({"store": store_settings.model_dump(mode="json", exclude_none=True)}))
    store = open_store(store_settings)
    try:
        store.ingest(
            [Intake(make_event(person_id="p-9", gallery_id="city-pd"), AlertPlan(True, ["desk"]))], time.time(), 60
        )
    finally:
        store.close()
    assert _review(config, "list") == 0 and "person=p-9" in capsys.readouterr().out
    assert _review(config, "confirm", "1", "--by", "officer-c", "--reason", "matches the case photo") == 0
    capsys.readouterr()
    assert _review(config, "audit") == 0
    line = capsys.readouterr().out.strip()
    assert "officer-c" in line and "review.confirm" in line and "alert:1" in line and "matches the case photo" in line
