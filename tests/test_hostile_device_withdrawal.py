"""A withdrawal that reached the device also reaches its outbox (attack finding A2, issue 12 item 8).

Once the device uses a gallery without a person, nothing about that person leaves it: events
queued while the broker was away are deleted (crop included) when the new bundle comes into use,
the sender asks before each row goes out (an outbox from before a restart, a decision made on the
previous gallery), and every drop is counted in ``lookout_events_dropped_total{reason}`` (A19).
Real models, real signed bundles, a real mosquitto for the outage.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from lookout.device.config import DeviceConfig
from lookout.device.decision import Decider, Observation
from lookout.device.emitter import Deliveries
from lookout.device.outbox import DROPPED_FULL, DROPPED_WITHDRAWN, Outbox, OutboxSender
from lookout.device.publisher import MemoryPublisher
from lookout.device.runtime import Runtime
from lookout.device.status import Metrics
from lookout.device.tracker import Track
from lookout.events import parse_match_event
from lookout.gallery.keys import generate_keys
from lookout.gallery.reader import load_bundle
from lookout.relay.config import RelayConfig
from lookout.relay.service import RelayService
from lookout.sync.build import build_gallery, update_gallery
from lookout.sync.records import PhotoRecord
from lookout.topics import Topics
from tests.helpers import Subscriber, wait_for
from tests.relay_helpers import NO_GATE, make_event


def _event(event_id: str, person_id: str) -> bytes:
    return json.dumps({"event_id": event_id, "person_id": person_id, "crop_jpeg_b64": "/9j/"}).encode()


def _add(outbox: Outbox, event_id: str, person_id: str, photo_ids: tuple[str, ...] = ()) -> None:
    outbox.add(
        event_id,
        "dt/lookout/cam/match",
        _event(event_id, person_id),
        time.time() + 60,
        person_id=person_id,
        photo_ids=photo_ids,
    )


def _run_device_once(tmp_path: Path, device_id: str, public: Path, pipeline) -> tuple[list[str], Runtime]:
    """The real device runtime over one empty frame with bundle ``tmp_path/v2`` and the outbox left in
    ``tmp_path/outbox.sqlite``: the ids of the match events it sent, and the runtime (for its metrics)."""
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "empty.png"), np.full((240, 320, 3), 128, np.uint8))
    doc = {
        "device_id": device_id,
        "location": {"jurisdiction": "US-NY"},
        "source": {"url": str(frames), "realtime": False},
        "models": {"device": "CPU"},
        "gallery": {"bundle_dir": str(tmp_path / "v2"), "public_key": str(public)},
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "flush_at_end_s": 10},
    }  # fmt: skip
    publisher = MemoryPublisher()
    runtime = Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline, publisher=publisher)
    assert runtime.run() == 0
    return [
        json.loads(payload)["event_id"] for topic, payload, _ in publisher.messages if topic.endswith("/match")
    ], runtime


def test_outbox_drops_every_row_of_a_person_the_gallery_no_longer_holds(tmp_path):
    path = tmp_path / "outbox.sqlite"
    # An outbox written before rows named their person (the column is added; the person read from the payload).
    legacy = sqlite3.connect(path)
    legacy.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL,"
        " payload BLOB NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " last_sent_at REAL, stale INTEGER NOT NULL DEFAULT 0);"
    )
    legacy.execute("INSERT INTO outbox (event_id, topic, payload, created_at, expires_at) VALUES (?,?,?,?,?)",
                   ("old-grace", "t", _event("old-grace", "grace"), time.time(), time.time() + 60))  # fmt: skip
    legacy.commit()
    legacy.close()
    metrics = Metrics()
    outbox = Outbox(path)
    outbox.on_dropped = Deliveries(metrics, outbox).dropped
    _add(outbox, "g-1", "grace")
    _add(outbox, "e-1", "eileen")
    outbox.add("status-1", "t", b"{}", time.time() + 60)  # about nobody: stays
    _add(outbox, "g-2", "grace")
    dropped = outbox.drop_rows(lambda row: row.person_id in (None, "eileen"))
    assert sorted(dropped) == ["g-1", "g-2", "old-grace"]
    assert [r.event_id for r in outbox.pending(10)] == ["e-1", "status-1"]
    assert metrics.events_dropped[DROPPED_WITHDRAWN] == 3
    assert f'lookout_events_dropped_total{{device="cam",reason="{DROPPED_WITHDRAWN}"}} 3' in metrics.prometheus("cam")
    outbox.close()
    raw = path.read_bytes() + (path.with_name(path.name + "-wal").read_bytes() if Path(f"{path}-wal").exists() else b"")
    assert b'"person_id": "grace"' not in raw, "a withdrawn person's event (and crop) lingers in the outbox file"


def test_sender_never_sends_a_withdrawn_persons_event_and_holds_rows_while_it_cannot_tell(tmp_path):
    outbox, publisher, metrics = Outbox(tmp_path / "outbox.sqlite"), MemoryPublisher(), Metrics()
    outbox.on_dropped = Deliveries(metrics, outbox).dropped
    held: dict[str, bool | None] = {"grace": None, "eileen": None}  # no gallery in use yet
    sender = OutboxSender(outbox, publisher, admit=lambda row: held.get(row.person_id or "", True))
    publisher.start()
    for i, person in enumerate(["grace", "eileen", "grace"]):
        _add(outbox, f"ev-{i}", person)
    sender.start()
    try:
        time.sleep(0)  # let the sender look once
        wait_for(lambda: sender.outbox.count() == 3, 5, "the rows to stay while no gallery is in use")
        assert publisher.messages == []
        held.update(grace=False, eileen=True)  # a gallery without grace came into use
        sender.wake()
        wait_for(lambda: outbox.count() == 0, 10, "the outbox to empty")
    finally:
        sender.stop()
    assert [json.loads(p)["event_id"] for _, p, _ in publisher.messages] == ["ev-1"]
    assert metrics.events_dropped == {DROPPED_FULL: 0, DROPPED_WITHDRAWN: 2, "unencodable": 0}
    outbox.close()


def test_a_full_outbox_counts_each_dropped_event(tmp_path):
    metrics = Metrics()
    outbox = Outbox(tmp_path / "outbox.sqlite", max_events=10)
    outbox.on_dropped = Deliveries(metrics, outbox).dropped
    for i in range(13):
        _add(outbox, f"ev-{i}", "eileen")
    assert outbox.count() == 10 and metrics.events_dropped[DROPPED_FULL] == 3
    assert f'lookout_events_dropped_total{{device="cam",reason="{DROPPED_FULL}"}} 3' in metrics.prometheus("cam")
    outbox.close()


def _queued(path: Path, person: str) -> list[str]:
    """Event ids about ``person`` in the outbox that were never handed to the broker."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT event_id FROM outbox WHERE person_id = ? AND attempts = 0", (person,)).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


@pytest.mark.slow
def test_events_queued_during_an_outage_about_a_withdrawn_person_never_leave(
    tmp_path, pipeline, grace_hopper, astronaut, mosquitto_persistent
):
    broker = mosquitto_persistent
    private, public = generate_keys(tmp_path / "keys")
    cv2.imwrite(str(tmp_path / "grace.jpg"), grace_hopper)
    cv2.imwrite(str(tmp_path / "eileen.jpg"), astronaut)
    records = [
        PhotoRecord(person_id="grace", name="Grace", photo=str(tmp_path / "grace.jpg"), jurisdiction="US-NY"),
        PhotoRecord(person_id="eileen", name="Eileen", photo=str(tmp_path / "eileen.jpg"), jurisdiction="US-NY"),
    ]
    build_gallery(records, tmp_path / "v1", private, pipeline, progress=False)
    update_gallery(tmp_path / "v1", records, tmp_path / "v2", private, pipeline, public_key=public,
                   withdraw=["grace/grace.jpg"], progress=False)  # fmt: skip
    frames = tmp_path / "frames"
    frames.mkdir()
    faces = [cv2.resize(img, (round(img.shape[1] * 480 / img.shape[0]), 480)) for img in (grace_hopper, astronaut)]
    cv2.imwrite(str(frames / "scene.png"), np.hstack(faces))
    outbox = tmp_path / "outbox.sqlite"
    doc = {
        "device_id": "cam-withdraw",
        "location": {"jurisdiction": "US-NY"},
        "source": {"url": str(frames), "loop": True, "fps": 8},
        "models": {"device": "CPU"},
        "gallery": {"bundle_dir": str(tmp_path / "v1"), "public_key": str(public)},
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "events": {"cooldown_s": 0.5},
        "outbox": {"path": str(outbox)},
    }  # fmt: skip
    sub = Subscriber(broker.port, persistent=True)
    runtime = Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()

    def received(person: str) -> set[str]:
        return {str(e.event_id) for e in sub.matches() if e.person_id == person}

    try:
        wait_for(lambda: received("grace") and received("eileen"), 90, "both people matched while the broker is up")
        broker.stop()
        wait_for(lambda: len(_queued(outbox, "grace")) >= 2 and _queued(outbox, "eileen"), 60, "events queued")
        queued_grace = set(_queued(outbox, "grace"))
        runtime.on_swap(tmp_path / "v2")  # the withdrawal reaches the device while the broker is away
        wait_for(lambda: runtime.metrics.bundle_version == "2", 30, "the device to use v2")
        assert _queued(outbox, "grace") == [], "events of a withdrawn person wait in the outbox after the swap"
        assert runtime.metrics.events_dropped[DROPPED_WITHDRAWN] >= len(queued_grace)
        queued_eileen = set(_queued(outbox, "eileen"))
        broker.start()
        wait_for(lambda: queued_eileen <= received("eileen"), 60, "eileen's queued events after the outage")
        sub.barrier()
        assert not queued_grace & received("grace"), "an event of a withdrawn person left after the withdrawal"
        assert not [e for e in sub.matches() if e.person_id == "grace" and e.bundle_version == "2"]
    finally:
        runtime.request_stop()
        thread.join(30)
        sub.close()
    assert not thread.is_alive()


@pytest.mark.slow
def test_events_left_from_before_a_restart_about_a_withdrawn_person_are_dropped_at_start(
    tmp_path, pipeline, grace_hopper, astronaut
):
    """The device was off while the withdrawal arrived (`lookout sync pull` beside it): its outbox still holds
    her events from the last run. At start, with the new gallery in use, they are deleted unsent."""
    private, public = generate_keys(tmp_path / "keys")
    cv2.imwrite(str(tmp_path / "grace.jpg"), grace_hopper)
    cv2.imwrite(str(tmp_path / "eileen.jpg"), astronaut)
    records = [
        PhotoRecord(person_id="grace", name="Grace", photo=str(tmp_path / "grace.jpg"), jurisdiction="US-NY"),
        PhotoRecord(person_id="eileen", name="Eileen", photo=str(tmp_path / "eileen.jpg"), jurisdiction="US-NY"),
    ]
    build_gallery(records, tmp_path / "v1", private, pipeline, progress=False)
    update_gallery(tmp_path / "v1", records, tmp_path / "v2", private, pipeline, public_key=public,
                   withdraw=["grace/grace.jpg"], progress=False)  # fmt: skip
    left = Outbox(tmp_path / "outbox.sqlite")  # what the last run left behind
    for event_id, person in (("g-1", "grace"), ("e-1", "eileen"), ("g-2", "grace")):
        _add(left, event_id, person)
    left.close()
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "empty.png"), np.full((240, 320, 3), 128, np.uint8))  # nobody in view
    doc = {
        "device_id": "cam-restart",
        "location": {"jurisdiction": "US-NY"},
        "source": {"url": str(frames), "realtime": False},
        "models": {"device": "CPU"},
        "gallery": {"bundle_dir": str(tmp_path / "v2"), "public_key": str(public)},
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "flush_at_end_s": 10},
    }  # fmt: skip
    publisher = MemoryPublisher()
    runtime = Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline, publisher=publisher)
    assert runtime.run() == 0
    sent = [json.loads(payload)["event_id"] for topic, payload, _ in publisher.messages if topic.endswith("/match")]
    assert sent == ["e-1"], sent
    assert runtime.metrics.events_dropped[DROPPED_WITHDRAWN] == 2


def test_a_decision_names_the_enrolled_photos_its_votes_rest_on():
    decider = Decider(k=2, n=3, min_margin=0.05)
    track = Track(id=1, box=np.array([0, 0, 10, 10], np.float32), first_frame=0, last_frame=1)
    votes = [("amy/amy1.png", 0.9), ("amy/amy2.png", 0.8)]
    decisions = [
        decider.observe(track, Observation(i, "amy", score, 0.1, "Amy", photo), 0.5, 100.0 + i)
        for i, (photo, score) in enumerate(votes)
    ]
    assert decisions[0] is None and decisions[1] is not None
    assert decisions[1].photo_ids == ("amy/amy1.png", "amy/amy2.png")


@pytest.mark.slow
def test_events_resting_on_a_withdrawn_photo_are_dropped_while_her_other_events_go(
    tmp_path, pipeline, grace_hopper, astronaut
):
    """A29: the person stays (another photo), the withdrawn photo's matches do not leave the device."""
    private, public = generate_keys(tmp_path / "keys")
    cv2.imwrite(str(tmp_path / "grace.jpg"), grace_hopper)
    cv2.imwrite(str(tmp_path / "grace-mirror.jpg"), cv2.flip(grace_hopper, 1))
    cv2.imwrite(str(tmp_path / "eileen.jpg"), astronaut)
    records = [
        PhotoRecord(person_id="grace", name="Grace", photo=str(tmp_path / f"{p}.jpg"), jurisdiction="US-NY")
        for p in ("grace", "grace-mirror")
    ] + [PhotoRecord(person_id="eileen", name="Eileen", photo=str(tmp_path / "eileen.jpg"), jurisdiction="US-NY")]
    build_gallery(records, tmp_path / "v1", private, pipeline, progress=False)
    update_gallery(tmp_path / "v1", records, tmp_path / "v2", private, pipeline, public_key=public,
                   withdraw=["grace/grace.jpg"], progress=False)  # fmt: skip
    left = Outbox(tmp_path / "outbox.sqlite")  # queued before the withdrawal reached the device
    _add(left, "on-withdrawn", "grace", ("grace/grace.jpg",))
    _add(left, "on-both", "grace", ("grace/grace-mirror.jpg", "grace/grace.jpg"))
    _add(left, "on-kept", "grace", ("grace/grace-mirror.jpg",))
    left.close()
    sent, runtime = _run_device_once(tmp_path, "cam-photo", public, pipeline)
    assert sent == ["on-kept"], sent
    assert runtime.metrics.events_dropped[DROPPED_WITHDRAWN] == 2


def test_events_dropped_on_the_device_leave_no_gap_for_the_relay(tmp_path, store_settings, caplog):
    """A38: a withdrawal (or a full outbox) drops rows before they are sent; numbers are given at the first send,
    so the relay sees 1, 2, 3 ... and reports nothing lost in transit."""
    outbox = Outbox(tmp_path / "outbox.sqlite")
    for i in range(6):
        event = make_event(person_id="grace" if i % 2 else "eileen")
        outbox.add(str(event.event_id), Topics().match(event.device_id), event.to_json(),
                   event.expires_at.timestamp(), person_id=event.person_id)  # fmt: skip
    assert len(outbox.drop_rows(lambda row: row.person_id != "grace")) == 3
    sent = [row for row in map(outbox.number, outbox.pending(100)) if row is not None]
    outbox.close()
    assert [parse_match_event(row.payload).seq.n for row in sent] == [1, 2, 3]
    clock = [time.time()]
    config = RelayConfig(store=store_settings, policy=NO_GATE, gaps={"grace_s": 60, "scan_every_s": 5})
    relay = RelayService(config, notifiers={}, clock=lambda: clock[0])
    try:
        for row in sent:
            relay.handle(row.topic, row.payload)
        clock[0] += 600
        assert relay.scan_gaps(clock[0]) == 0 and relay.counters.snapshot()["seq_missing"] == 0
    finally:
        relay.stop()


@pytest.mark.slow
def test_a_photo_only_renamed_in_the_source_keeps_its_queued_events(tmp_path, pipeline, grace_hopper, astronaut):
    """A44: a photo that left the gallery only because its file was renamed (same bytes, enrolled again under the
    new id) is not a withdrawal: events resting on it still go. One whose content is gone (the source withdrew its
    consent: use_for_recognition false) is: those are dropped."""
    private, public = generate_keys(tmp_path / "keys")
    photos = {"grace": grace_hopper, "grace-mirror": cv2.flip(grace_hopper, 1), "eileen": astronaut}
    for name, image in photos.items():
        cv2.imwrite(str(tmp_path / f"{name}.jpg"), image)
    (tmp_path / "grace-renamed.jpg").write_bytes((tmp_path / "grace.jpg").read_bytes())

    def record(person: str, file: str, use: bool = True) -> PhotoRecord:
        return PhotoRecord(person_id=person, name=person.title(), photo=str(tmp_path / file), jurisdiction="US-NY",
                           use_for_recognition=use)  # fmt: skip

    v1 = [record("grace", "grace.jpg"), record("grace", "grace-mirror.jpg"), record("eileen", "eileen.jpg")]
    v2 = [record("grace", "grace-renamed.jpg"), record("grace", "grace-mirror.jpg", use=False),
          record("eileen", "eileen.jpg")]  # fmt: skip
    build_gallery(v1, tmp_path / "v1", private, pipeline, progress=False)
    update_gallery(tmp_path / "v1", v2, tmp_path / "v2", private, pipeline, public_key=public, progress=False)
    old = load_bundle(tmp_path / "v1", public, pipeline.embedder.digest, None, location="US-NY")
    left = Outbox(tmp_path / "outbox.sqlite")
    for event_id, photo in (("on-renamed", "grace/grace.jpg"), ("on-mirror", "grace/grace-mirror.jpg")):
        left.add(event_id, "dt/lookout/cam/match", _event(event_id, "grace"), time.time() + 60, person_id="grace",
                 photo_ids=(photo,), photo_sha256=old.photo_sha256((photo,)))  # fmt: skip
    left.close()
    sent, runtime = _run_device_once(tmp_path, "cam-rename", public, pipeline)
    assert sent == ["on-renamed"], sent
    assert runtime.metrics.events_dropped[DROPPED_WITHDRAWN] == 1
