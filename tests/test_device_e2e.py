"""The device end to end: real models, a real signed gallery of faces-dev, a real mosquitto.

In-process runs (the runtime in a thread) where the test needs to look inside or steer
(outage timing, hot reload); real subprocesses (`python -m lookout run`) for the crash
(SIGKILL), clean stop (SIGTERM) and bad-input tests. Videos are short and processed as
fast as possible; time-dependent behaviour (the 3-minute cooldown) runs on video time.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
import yaml

from lookout.device.config import DeviceConfig
from lookout.device.publisher import MemoryPublisher
from lookout.device.runtime import Runtime
from lookout.device.videomaker import STRANGERS, make_hold_video, make_scene_video
from lookout.events import parse_match_event
from lookout.mosquitto import free_port
from lookout.mqtt import MqttSettings, make_client
from tests.helpers import PROJECT_ROOT, OutputReader, Subscriber, wait_for

pytestmark = pytest.mark.slow  # see README, Tests

SCHEMA = json.loads((PROJECT_ROOT / "schemas" / "match-event.v1.json").read_text())
PYTHON = sys.executable


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def world(tmp_path_factory, faces_dev_gallery, pipeline, jurisdiction):
    """Gallery bundles and videos, built once per session. v1 is the session's faces-dev gallery (conftest); the
    hot-reload bundles are signed with its key and share one enrol cache, so each photo is embedded once."""
    from lookout.sync.build import build_gallery_from_folders

    faces_dev, private, public = faces_dev_gallery.faces_dev, faces_dev_gallery.private, faces_dev_gallery.public
    root = tmp_path_factory.mktemp("device-world")
    bundle = faces_dev_gallery.bundle
    enrol_cache = root / "enrol-work"
    # Hot reload: v1 without sheldon, v2 with everyone.
    partial = root / "people-no-sheldon"
    partial.mkdir()
    for person in faces_dev.iterdir():
        if person.is_dir() and person.name != "sheldon":
            (partial / person.name).symlink_to(person)
    no_sheldon = root / "reload-v1"
    build_gallery_from_folders(
        partial, no_sheldon, private, pipeline, progress=False, version=1, jurisdiction=jurisdiction,
        work_dir=enrol_cache, gallery_id="faces-dev",
    )  # fmt: skip
    full_v2 = root / "reload-v2"
    build_gallery_from_folders(
        faces_dev, full_v2, private, pipeline, progress=False, version=2, jurisdiction=jurisdiction,
        work_dir=enrol_cache, gallery_id="faces-dev",
    )  # fmt: skip
    scene = make_scene_video(root / "scene.mp4", faces_dev, fps=5, photo_s=3.0, blank_s=1.0, stranger_s=1.6)
    strangers = make_scene_video(root / "strangers.mp4", faces_dev, fps=5, photos=(), blank_s=0.0, stranger_s=2.0)
    blank = make_scene_video(root / "blank.mp4", faces_dev, fps=5, photos=(), strangers=False, blank_s=1.0)
    return SimpleNamespace(
        root=root,
        bundle=bundle,
        public=public,
        private=private,
        scene=scene,
        strangers=strangers,
        blank=blank,
        no_sheldon=no_sheldon,
        full_v2=full_v2,
        faces_dev=faces_dev,
    )


def config(world, tmp_path, video, port=None, **sections) -> dict:
    doc = {
        "device_id": "cam-test",
        "device_name": "Test camera",
        "location": {"name": "Lab", "jurisdiction": "GB"},
        "source": {"url": str(video), "realtime": False},
        "models": {"device": "CPU"},
        "gallery": {"bundle_dir": str(world.bundle), "public_key": str(world.public)},
        "mqtt": {"host": "127.0.0.1", "port": port or free_port()},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "status": {"heartbeat_s": 1},
        "clock": "video",
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            doc[key] = {**doc.get(key, {}), **value}
        else:
            doc[key] = value
    return doc


def start_runtime(doc, pipeline, publisher=None) -> tuple[Runtime, threading.Thread, dict]:
    runtime = Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline, publisher=publisher)
    result: dict = {}

    def target():
        try:
            result["rc"] = runtime.run()
        except BaseException as err:
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return runtime, thread, result


def finish(thread, result, timeout=120):
    thread.join(timeout)
    assert not thread.is_alive(), "device did not stop in time"
    if "error" in result:
        raise result["error"]
    return result["rc"]


def write_config(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def lookout(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "lookout", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def outbox_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [r[0] for r in db.execute("SELECT event_id FROM outbox ORDER BY seq")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def outbox_ids_sent(path: Path) -> list[str]:
    """Event ids handed to the MQTT client at least once and not yet acknowledged."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [r[0] for r in db.execute("SELECT event_id FROM outbox WHERE attempts > 0 ORDER BY seq")]
    finally:
        db.close()


def stranger_times(world) -> list[tuple[float, float]]:
    return [(s.start_s, s.end_s) for s in world.scene.segments if s.kind == "stranger"]


# -- recognition ----------------------------------------------------------------------------


def test_video_gives_one_valid_event_per_person_and_none_for_strangers(world, tmp_path, pipeline, mosquitto):
    sub = Subscriber(mosquitto.port)
    probe = {"device_id": "probe", "state": "online", "at": "2025-01-01T00:00:00Z", "version": "test"}
    publish_retained(mosquitto.port, "dt/lookout/probe/status", probe)
    tail = lookout("events", "tail", "--port", str(mosquitto.port), "--json", "--count", "3", "--timeout", "60")
    tail_out = OutputReader(tail)
    wait_for(lambda: '"probe"' in tail_out.text("stdout"), 30, "the tail to subscribe (it prints the retained probe)")
    doc = config(world, tmp_path, world.scene.path, mosquitto.port, events={"cooldown_s": 60})
    runtime, thread, result = start_runtime(doc, pipeline)
    assert finish(thread, result) == 0
    wait_for(lambda: len(sub.kind("match")) >= runtime.events_emitted, 10, "all events at the subscriber")
    events = sub.matches()
    sub.close()
    expected = world.scene.identities
    assert expected == {"raj", "leonard", "howard", "sheldon", "penny", "amy", "bernadette"}
    people = [e.person_id for e in events]
    assert sorted(people) == sorted(set(people)), f"one event per person within the cooldown: {people}"
    assert set(people) == expected, f"missed {expected - set(people)}, unexpected {set(people) - expected}"
    anchor = runtime.clock._anchor
    gallery_threshold = json.loads((world.bundle / "manifest.json").read_text())["threshold"]["value"]
    for event, raw in zip(events, sub.kind("match")):
        jsonschema.validate(json.loads(raw), SCHEMA)
        assert event.device_id == "cam-test" and event.bundle_version == "1"
        assert event.model.digest == pipeline.embedder.digest and event.model.name == pipeline.embedder.name
        assert event.score >= gallery_threshold and event.margin >= 0.05 and event.track_length >= 3
        assert event.crop_jpeg() is not None and len(event.crop_jpeg()) <= 16384
        assert event.box[2] <= 1280 and event.box[3] <= 720 and event.location.name == "Lab"
        assert not event.is_stale()
        t = event.seen_at.timestamp() - anchor  # video time of the decision
        assert not any(a <= t <= b + 0.5 for a, b in stranger_times(world)), f"event at {t:.1f} s, among strangers"
    # privacy: every event left the outbox; nothing about faces written anywhere
    assert outbox_ids(tmp_path / "outbox.sqlite") == []
    assert not [p for p in tmp_path.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".npy")]
    statuses = [json.loads(p)["state"] for p in sub.kind("status")]
    assert statuses[-2:] == ["online", "offline"] or statuses[-1] == "offline"
    # the simplest subscriber printed them as JSON lines
    out, err = tail_out.finish(timeout=60)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [line["kind"] for line in lines if line["kind"] == "match"] == ["match"] * 3, err
    assert {line["payload"]["person_id"] for line in lines if line["kind"] == "match"} <= expected


def test_strangers_alone_give_no_event(world, tmp_path, pipeline):
    publisher = MemoryPublisher()
    runtime, thread, result = start_runtime(config(world, tmp_path, world.strangers.path), pipeline, publisher)
    assert finish(thread, result) == 0
    assert runtime.metrics.embedded >= len(STRANGERS) * 3, "the strangers' faces were seen and embedded"
    assert runtime.events_emitted == 0
    assert not [m for m in publisher.messages if m[0].endswith("/match")]


def test_detection_only_mode_recognises_nobody(world, tmp_path, pipeline):
    doc = config(world, tmp_path, world.scene.path, recognition={"enabled": False}, location={"jurisdiction": "US-IL"})
    runtime, thread, result = start_runtime(doc, pipeline, MemoryPublisher())
    assert finish(thread, result) == 0
    assert runtime.metrics.faces > 50 and runtime.metrics.embedded == 0 and runtime.events_emitted == 0


def test_cooldown_one_event_per_window_over_three_minutes(world, tmp_path, pipeline):
    hold = make_hold_video(tmp_path / "hold.mp4", world.faces_dev, identity="sheldon", seconds=180, fps=2)
    publisher = MemoryPublisher()
    doc = config(world, tmp_path, hold.path, events={"cooldown_s": 60})
    runtime, thread, result = start_runtime(doc, pipeline, publisher)
    assert finish(thread, result) == 0
    events = [parse_match_event(p) for t, p, _ in publisher.messages if t.endswith("/match")]
    assert [e.person_id for e in events] == ["sheldon"] * 3, [e.person_id for e in events]
    times = [e.seen_at.timestamp() for e in events]
    assert all(b - a >= 60 for a, b in itertools.pairwise(times)), times
    assert times[0] - runtime.clock._anchor < 5  # the first one as soon as recognised


def test_hot_reload_uses_new_bundle_from_next_frame(world, tmp_path, pipeline):
    publisher = MemoryPublisher()
    doc = config(
        world,
        tmp_path,
        world.scene.path,
        gallery={"bundle_dir": str(world.no_sheldon), "public_key": str(world.public)},
    )
    runtime, thread, result = start_runtime(doc, pipeline, publisher)
    # bbt1 (0-3 s) has sheldon; swap during the blank after it (frames 15-19), before bbt2 (4-7 s) has him again
    wait_for(lambda: runtime.metrics.frames >= 16, 60, "frame 16")
    runtime.on_swap(world.full_v2)
    assert finish(thread, result) == 0
    events = [parse_match_event(p) for t, p, _ in publisher.messages if t.endswith("/match")]
    by_person = {e.person_id: e.bundle_version for e in events}
    assert by_person.get("sheldon") == "2", by_person
    assert "1" in by_person.values()
    assert runtime.metrics.frames == world.scene.frames and runtime.metrics.dropped_frames == 0


# -- delivery ---------------------------------------------------------------------------------


def test_broker_outage_loses_nothing_and_duplicates_only_what_was_in_flight(
    world, tmp_path, pipeline, mosquitto_persistent
):
    """The promise under a broker outage (QoS 1, at least once): every event arrives; an event arrives twice
    only if it was in flight at the outage, on either leg: handed to the device's MQTT client with its PUBACK
    not yet back (the broker may have taken it and the outage swallowed the acknowledgement: the client resends
    it), or delivered to the subscriber whose acknowledgement the outage swallowed (the broker, persistent,
    redelivers it). Subscribers (the relay) drop repeats by event id. Events that waited in the outbox during the
    outage arrive exactly once, in order. Exactly-once is not promised (it would take QoS 2 on both legs): this
    test used to assert it and failed whenever an event was in flight at the moment the broker stopped."""
    broker = mosquitto_persistent
    sub = Subscriber(broker.port, persistent=True)
    doc = config(world, tmp_path, world.scene.path, broker.port, source={"loop": True, "realtime": True, "fps": 10})
    runtime, thread, result = start_runtime(doc, pipeline)
    wait_for(lambda: runtime.metrics.events_delivered >= 1, 60, "a first delivered event")
    broker.stop()  # outage while matches keep happening
    publisher = runtime.session.publisher
    wait_for(lambda: not publisher.connected, 15, "the device to notice the outage")
    # Sent and not acknowledged (acknowledged rows leave the outbox): nothing is handed over while disconnected.
    in_flight = set(outbox_ids_sent(tmp_path / "outbox.sqlite"))
    delivered_before = runtime.metrics.events_delivered
    wait_for(lambda: runtime.events_emitted >= delivered_before + len(in_flight) + 3, 60, "events during the outage")
    assert runtime.outbox.count() >= 3
    seen_before = {str(e.event_id) for e in sub.matches()}  # the subscriber's acks for these may be lost
    broker.start()
    wait_for(lambda: runtime.events_emitted >= 7 and runtime.outbox.count() == 0, 90, "delivery after the outage")
    runtime.request_stop()
    assert finish(thread, result) == 0
    wait_for(lambda: len(sub.kind("match")) >= len(runtime.emitted_ids), 15, "the subscriber to catch up")
    sub.barrier()  # anything else the broker held for the subscriber (a duplicate) has arrived by now
    received = [str(e.event_id) for e in sub.matches()]
    sub.close()
    assert sorted(set(received)) == sorted(runtime.emitted_ids), "every event arrives"
    repeated = {event_id for event_id in received if received.count(event_id) > 1}
    may_repeat = in_flight | seen_before
    assert repeated <= may_repeat, f"repeated events that were not in flight at the outage: {repeated - may_repeat}"
    queued = [e for e in runtime.emitted_ids if e not in may_repeat]  # emitted during the outage
    assert len(queued) >= 3 and [e for e in received if e in set(queued)] == queued, "once each, oldest first"


def test_sigkill_with_events_in_outbox_then_restart_delivers_them(world, tmp_path, mosquitto_factory):
    port = free_port()  # no broker yet: unreachable
    outbox = tmp_path / "outbox.sqlite"
    cfg = write_config(
        tmp_path / "device.yaml",
        config(world, tmp_path, world.scene.path, port, outbox={"path": str(outbox), "flush_at_end_s": 600}),
    )
    proc = lookout("run", "--config", str(cfg))
    try:
        wait_for(lambda: len(outbox_ids(outbox)) >= 7 or proc.poll() is not None, 120, "events in the outbox")
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert "mqtt.unreachable" in err
    kept = outbox_ids(outbox)
    assert len(kept) >= 7
    broker = mosquitto_factory(port=port)
    sub = Subscriber(broker.port)
    restart = write_config(
        tmp_path / "restart.yaml",
        config(world, tmp_path, world.blank.path, port, outbox={"path": str(outbox), "flush_at_end_s": 30}),
    )
    rc = subprocess.run(
        [PYTHON, "-m", "lookout", "run", "--config", str(restart)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rc.returncode == 0, rc.stderr[-2000:]
    wait_for(lambda: len(sub.kind("match")) >= len(kept), 10, "the kept events")
    received = [str(e.event_id) for e in sub.matches()]
    sub.close()
    assert received == kept
    assert outbox_ids(outbox) == []


def test_sigterm_stops_cleanly_with_offline_status(world, tmp_path, mosquitto):
    sub = Subscriber(mosquitto.port)
    metrics_port = free_port()
    cfg = write_config(
        tmp_path / "device.yaml",
        config(
            world,
            tmp_path,
            world.scene.path,
            mosquitto.port,
            source={"loop": True, "realtime": True},
            status={"metrics_port": metrics_port},
        ),
    )
    proc = lookout("run", "--config", str(cfg))
    try:
        wait_for(lambda: any(json.loads(p)["state"] == "online" for p in sub.kind("status")), 60, "online status")
        wait_for(lambda: sub.kind("heartbeat"), 10, "a heartbeat")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'lookout_frames_total{device="cam-test"}' in metrics and "lookout_outbox_depth" in metrics
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "device.stopped" in err
    wait_for(lambda: json.loads(sub.kind("status")[-1])["state"] == "offline", 5, "offline status")
    beat = json.loads(sub.kind("heartbeat")[-1])
    assert beat["bundle_version"] == "1" and "detect" in beat["stage_ms"]
    sub.close()


# -- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_give_clear_messages(world, tmp_path):
    from lookout.device.videomaker import corrupt_video

    base = config(world, tmp_path, world.scene.path)
    # a config value of the wrong type: exit 2, naming the key, before anything starts
    cfg = write_config(tmp_path / "device.yaml", base)
    r = subprocess.run(
        [PYTHON, "-m", "lookout", "run", "-c", str(cfg), "--set", "mqtt.port=abc"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "mqtt.port" in r.stderr and "valid integer" in r.stderr, r.stderr
    # a corrupt video: exit 2, saying so
    bad = corrupt_video(tmp_path / "broken.mp4")
    r = subprocess.run(
        [PYTHON, "-m", "lookout", "run", "-c", str(cfg), "--source", str(bad)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "cannot be decoded" in r.stderr, r.stderr
    # recognition where the policy denies it: refused, saying why
    r = subprocess.run(
        [PYTHON, "-m", "lookout", "run", "-c", str(cfg), "--set", "location.jurisdiction=US-IL"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "not allowed" in r.stderr and "Illinois" in r.stderr, r.stderr
    assert "recognition.enabled: false" in r.stderr
    # --check-config reports each problem and exits non-zero
    r = subprocess.run(
        [PYTHON, "-m", "lookout", "run", "-c", str(cfg), "--check-config", "--source", str(bad)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "FAIL  source" in r.stdout and "ok    gallery" in r.stdout, r.stdout + r.stderr
    # a missing camera that never comes: retried with backoff, then given up with a message
    r = subprocess.run(
        [
            PYTHON,
            "-m",
            "lookout",
            "run",
            "-c",
            str(cfg),
            "--set",
            "source.url=37",
            "--set",
            "source.give_up_after_s=2",
            "--set",
            "source.reopen.initial_s=0.2",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "no camera at that index" in r.stderr and "gave up" in r.stderr, r.stderr


def test_missing_camera_and_unreachable_broker_keep_the_device_running(world, tmp_path):
    cfg = write_config(tmp_path / "device.yaml", config(world, tmp_path, "37", source={"reopen": {"initial_s": 0.2}}))
    proc = lookout("run", "-c", str(cfg))
    output = OutputReader(proc)
    try:
        wait_for(lambda: output.count("source.unavailable") >= 2 or proc.poll() is not None, 60, "a second attempt")
        assert proc.poll() is None, "a device whose camera is missing keeps trying"
        proc.send_signal(signal.SIGTERM)
        _, err = output.finish(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "source.unavailable" in err and "no camera at that index" in err
    assert "mqtt.unreachable" in err


def test_debug_frames_only_when_asked_and_announced(world, tmp_path, pipeline, capsys):
    frames = tmp_path / "debug-frames"
    doc = config(world, tmp_path, world.blank.path, debug={"save_frames_dir": str(frames)})
    _runtime, thread, result = start_runtime(doc, pipeline, MemoryPublisher())
    assert finish(thread, result) == 0
    assert "DEBUG OPTION ON" in capsys.readouterr().err
    assert len(list(frames.glob("*.jpg"))) == world.blank.frames


def test_bundle_pulled_while_running_is_used_without_restart(world, tmp_path, pipeline):
    """No bundle at start (recognition waits), v1 pulled, then v2 published and swapped in, all while running."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from lookout.sync.publish import publish

    site = tmp_path / "site"
    site.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    doc = config(
        world,
        tmp_path,
        world.scene.path,
        source={"loop": True, "realtime": True, "fps": 10},
        gallery={
            "store_dir": str(tmp_path / "store"),
            "public_key": str(world.public),
            "pull": {"url": f"http://127.0.0.1:{server.server_address[1]}/", "interval_s": 0.5},
        },
    )
    del doc["gallery"]["bundle_dir"]
    publisher = MemoryPublisher()
    runtime, thread, result = start_runtime(doc, pipeline, publisher)
    try:
        wait_for(lambda: runtime.started.is_set(), 60, "the device to start")
        assert runtime.gallery is None  # nothing to recognise with yet, but running
        publish(world.no_sheldon, site, world.public)
        wait_for(lambda: runtime.metrics.bundle_version == "1", 30, "bundle v1 in use")
        frames_at_v1 = runtime.metrics.frames
        publish(world.full_v2, site, world.public)
        wait_for(lambda: runtime.metrics.bundle_version == "2", 30, "bundle v2 in use")
        wait_for(lambda: runtime.metrics.frames > frames_at_v1 + 60, 30, "frames after the swap")
    finally:
        runtime.request_stop()
        server.shutdown()
    assert finish(thread, result) == 0
    events = [parse_match_event(p) for t, p, _ in publisher.messages if t.endswith("/match")]
    assert events and {e.bundle_version for e in events} <= {"1", "2"}
    assert all(e.bundle_version == "2" for e in events if e.person_id == "sheldon")


def test_policy_without_crops_sends_no_face_image(world, tmp_path, pipeline):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: crops-test\nrules:\n  - {jurisdiction: US-IL, decision: deny}\n"
        "  - {jurisdiction: DE, decision: allow, crops: false}\n"
    )
    publisher = MemoryPublisher()
    doc = config(
        world,
        tmp_path,
        world.scene.path,
        location={"jurisdiction": "DE"},
        gallery={"policy": str(policy)},
        events={"crop": True},
    )
    _runtime, thread, result = start_runtime(doc, pipeline, publisher)
    assert finish(thread, result) == 0
    events = [parse_match_event(p) for t, p, _ in publisher.messages if t.endswith("/match")]
    assert events, "the people in the video are still recognised"
    assert all(e.crop_jpeg() is None for e in events)


def publish_retained(port: int, topic: str, doc: dict) -> None:
    client = make_client(MqttSettings(port=port), client_id=f"test-probe-{os.getpid()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, json.dumps(doc).encode(), qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
