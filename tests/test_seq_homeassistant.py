"""Sequence numbers count only what the relay receives (attack finding A14).

Found: with Home Assistant discovery on, each match's Home Assistant copy (``dt/lookout/<id>/homeassistant/match``)
took the next number of the device's one sequence stream, so the relay, which reads only ``/match``, logged
``events.missing`` for every match and real losses (issue 12 item 10) drowned in the noise. Now the copy takes
no number: the match events of a device with Home Assistant on are numbered 1, 2, 3, ... and a relay reading
them (real store, both engines) reports no gap.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time

from lookout.device.config import DeviceConfig
from lookout.device.decision import Decision
from lookout.device.emitter import Deliveries, EventEmitter
from lookout.device.homeassistant import HomeAssistantConfig, HomeAssistantDiscovery
from lookout.device.outbox import Outbox
from lookout.device.publisher import MemoryPublisher
from lookout.device.status import Metrics
from lookout.device.tuning import Tuning
from lookout.events import parse_match_event
from lookout.relay.config import RelayConfig
from lookout.relay.service import RelayService
from lookout.topics import Topics
from tests.relay_helpers import NO_GATE, make_event


class Gallery:
    version, policy_version, model_name, model_digest = 3, "default-2", "dlib-resnet", "ab" * 32


def _emitter(tmp_path, outbox: Outbox) -> EventEmitter:
    cfg = DeviceConfig.model_validate(
        {"device_id": "cam-ha", "source": {"url": "0"}, "recognition": {"enabled": False}}
    )
    topics = Topics()
    homeassistant = HomeAssistantDiscovery(
        HomeAssistantConfig(enabled=True),
        device_id="cam-ha",
        device_name="Hall",
        area=None,
        status_topic=topics.status("cam-ha"),
        event_topic="dt/lookout/cam-ha/homeassistant/match",
        publisher=MemoryPublisher(),
    )
    metrics = Metrics()
    return EventEmitter(
        cfg, topics, metrics, outbox, Deliveries(metrics, outbox), lambda: None, Tuning(None, False), False,
        homeassistant,
    )  # fmt: skip


def test_home_assistant_copies_take_no_number_and_the_relay_sees_no_gap(tmp_path, store_settings, caplog):
    outbox = Outbox(tmp_path / "outbox.sqlite")
    emitter = _emitter(tmp_path, outbox)
    for i in range(5):
        decision = Decision(1, f"p{i}", None, 0.97, 0.2, 3, 5, (1, 2, 30, 40), None)
        emitter.emit(decision, Gallery(), time.time(), time.monotonic())
    rows = [row for row in map(outbox.number, outbox.pending(100)) if row is not None]  # as the sender sends them
    outbox.close()
    matches = [r for r in rows if r.topic == Topics().match("cam-ha")]
    copies = [r for r in rows if r.topic.endswith("/homeassistant/match")]
    assert len(matches) == 5 and len(copies) == 5
    assert [parse_match_event(r.payload).seq.n for r in matches] == [1, 2, 3, 4, 5]
    assert all("seq" not in json.loads(r.payload) for r in copies)

    clock = [time.time()]
    config = RelayConfig(store=store_settings, policy=NO_GATE, gaps={"grace_s": 60, "scan_every_s": 5})
    relay = RelayService(config, notifiers={}, clock=lambda: clock[0])
    try:
        for row in matches:
            relay.handle(row.topic, row.payload)
        clock[0] += 600
        with caplog.at_level(logging.WARNING):
            assert relay.scan_gaps(clock[0]) == 0
        assert relay.counters.snapshot()["seq_missing"] == 0
        assert not [r for r in caplog.records if r.getMessage() == "events.missing"]
    finally:
        relay.stop()


def test_an_outbox_numbered_by_row_goes_on_from_its_last_number(tmp_path):
    """Outbox files from before the counter numbered events by row: after the upgrade the numbers go on, never
    back (the relay would read a step back as duplicates) and never skip."""
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path)
    for i in range(3):
        event = make_event(person_id=f"p{i}")
        outbox.add(str(event.event_id), "dt/lookout/cam-1/match", event.to_json(), event.expires_at.timestamp())
    for row in outbox.pending(10):
        outbox.number(row)  # numbered 1, 2, 3 (an older device numbered them by row as they came in)
    outbox.close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM meta WHERE key IN ('last_n', 'numbering')")  # as an older device left it
    outbox = Outbox(path)
    try:
        event = make_event(person_id="p3")
        outbox.add(str(event.event_id), "dt/lookout/cam-1/match", event.to_json(), event.expires_at.timestamp())
        numbered = [row for row in map(outbox.number, outbox.pending(10)) if row is not None]
        assert [parse_match_event(r.payload).seq.n for r in numbered] == [1, 2, 3, 4]
    finally:
        outbox.close()
