"""Intake rules that are not about storage: reserved device ids are dead-lettered (issue 12 item 9),
and a message the store cannot take (a NUL in a text field, which PostgreSQL refuses) is set aside
as poison without stopping the relay or holding back the rest of its batch."""

from __future__ import annotations

import json

import pytest

from lookout.relay.config import RelayConfig
from lookout.relay.records import Outcome
from lookout.relay.service import RelayService
from lookout.topics import RESERVED_DEVICE_IDS, Topics
from tests.relay_helpers import NO_GATE, make_event


@pytest.fixture
def service(store_settings):
    svc = RelayService(RelayConfig(store=store_settings, policy=NO_GATE), notifiers={})
    yield svc
    svc.stop()


def _payload(**fields) -> bytes:
    doc = json.loads(make_event().to_json())
    doc.update(fields)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("reserved", [*sorted(RESERVED_DEVICE_IDS), "Relay", "RELAY"])
def test_reserved_device_ids_are_dead_lettered_not_alerted(service, reserved):
    prefix = Topics().prefix
    assert service.handle(f"{prefix}/{reserved}/match", _payload(device_id=reserved)) is None
    assert service.handle(f"{prefix}/cam-1/match", _payload(device_id=reserved)) is None
    counts = service.counters.snapshot()
    assert counts["invalid"] == 2 and counts["alerts"] == 0
    assert service.intake_store.alerts(None, 10) == []


def test_a_message_the_store_refuses_is_poison_and_the_rest_goes_on(service):
    topic = Topics().match("cam-1")
    bad = _payload(person_id="p\u0000x")  # valid JSON and schema; PostgreSQL text cannot hold NUL
    outcome = service.handle(topic, bad)
    if service.intake_store.kind == "postgresql":
        assert outcome is None and service.counters.snapshot()["invalid"] == 1
    assert service.handle(topic, make_event(person_id="p-2").to_json()) is Outcome.NEW_ALERT
