"""The device against what a gallery or an operator may hand it (issue 12 items 1, 2 and 8).

- A match the event schema refuses (a person id from an older builder, 200 characters long)
  is logged and counted, and the device goes on: the next match is sent.
- Withdrawn consent reaches a running device: after `gallery update` withdraws a person's
  photo and the device pulls the delta, that person is no longer matched, while others still are.
Real models, a real HTTP publish server on loopback, the real runtime and puller.
"""

from __future__ import annotations

import functools
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from lookout.device.config import DeviceConfig, example_config, load_config
from lookout.device.decision import Decision
from lookout.device.emitter import Deliveries, EventEmitter
from lookout.device.outbox import Outbox
from lookout.device.publisher import MemoryPublisher
from lookout.device.runtime import Runtime
from lookout.device.status import Metrics
from lookout.device.tuning import Tuning
from lookout.events import parse_match_event
from lookout.gallery.keys import generate_keys
from lookout.sync.build import build_gallery, update_gallery
from lookout.sync.publish import publish
from lookout.sync.records import PhotoRecord
from lookout.topics import Topics


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class FakeGallery:
    version, policy_version, model_name, model_digest = 3, "default-1", "dlib-resnet", "ab" * 32


def _decision(person_id: str) -> Decision:
    return Decision(1, person_id, None, 0.97, 0.2, 3, 5, (1, 2, 30, 40), None)


def test_an_event_the_schema_refuses_is_logged_counted_and_the_device_goes_on(tmp_path, caplog):
    cfg = DeviceConfig.model_validate({"device_id": "cam-1", "source": {"url": "0"}, "recognition": {"enabled": False}})
    metrics, outbox = Metrics(), Outbox(tmp_path / "outbox.sqlite")
    emitter = EventEmitter(
        cfg, Topics(), metrics, outbox, Deliveries(metrics, outbox), lambda: None, Tuning(None, False), False
    )
    emitter.emit(_decision("p" * 200), FakeGallery(), time.time(), time.monotonic())  # was: ValidationError
    emitter.emit(_decision("ok-1"), FakeGallery(), time.time(), time.monotonic())
    assert metrics.events_unencodable == 1 and emitter.events_emitted == 1 and outbox.count() == 1
    assert 'lookout_events_unencodable_total{device="cam-1"} 1' in metrics.prometheus("cam-1")
    (line,) = [r for r in caplog.records if r.getMessage() == "event.unencodable"]
    assert "200 characters" in line.lookout_fields["person_id"] and "person_id" in line.lookout_fields["reason"]
    outbox.close()


def test_example_config_is_commented_and_valid(tmp_path):
    text = example_config()
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#") or " # " in line]
    assert len(comments) >= 25
    (tmp_path / "device.yaml").write_text(text)
    cfg = load_config(tmp_path / "device.yaml", environ={})
    assert cfg.device_id == "cam-lobby-01" and cfg.location.jurisdiction == "GB"


# -- 8. withdrawn consent through a running device ---------------------------------------------------


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "publish"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow
def test_withdrawn_person_is_no_longer_matched_by_a_running_device(tmp_path, served, pipeline, grace_hopper, astronaut):
    root, url = served
    private, public = generate_keys(tmp_path / "keys")
    cv2.imwrite(str(tmp_path / "grace.jpg"), grace_hopper)
    cv2.imwrite(str(tmp_path / "eileen.jpg"), astronaut)
    records = [
        PhotoRecord(person_id="grace", name="Grace", photo=str(tmp_path / "grace.jpg"), jurisdiction="US-NY"),
        PhotoRecord(person_id="eileen", name="Eileen", photo=str(tmp_path / "eileen.jpg"), jurisdiction="US-NY"),
    ]
    build_gallery(records, tmp_path / "v1", private, pipeline, progress=False)
    publish(tmp_path / "v1", root)
    # the camera: both people side by side, over and over
    height = 480
    faces = [
        cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height)) for img in (grace_hopper, astronaut)
    ]
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "scene.png"), np.hstack(faces))
    doc = {
        "device_id": "cam-consent",
        "location": {"jurisdiction": "US-NY"},
        "source": {"url": str(frames), "loop": True, "fps": 8},
        "models": {"device": "CPU"},
        "gallery": {"store_dir": str(tmp_path / "store"), "public_key": str(public), "pull": {"url": url, "interval_s": 0.5}},
        "events": {"cooldown_s": 0.5},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
    }  # fmt: skip
    publisher = MemoryPublisher()
    runtime = Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline, publisher=publisher)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()

    def events(person: str, version: str) -> int:
        matches = [parse_match_event(p) for t, p, _ in list(publisher.messages) if t.endswith("/match")]
        return sum(1 for e in matches if e.person_id == person and e.bundle_version == version)

    try:
        wait_for(lambda: events("grace", "1") >= 1 and events("eileen", "1") >= 1, 90, "both people matched on v1")
        report = update_gallery(
            tmp_path / "v1", records, tmp_path / "v2", private, pipeline, public_key=public,
            withdraw=["grace/grace.jpg"], progress=False,
        )  # fmt: skip
        assert [r.reason for r in report.results if r.status == "removed"] == ["withdrawn"]
        publish(tmp_path / "v2", root)
        wait_for(lambda: runtime.metrics.bundle_version == "2", 60, "the device to pull and use v2 (the delta)")
        frames_at_swap = runtime.metrics.frames
        wait_for(
            lambda: events("eileen", "2") >= 2 and runtime.metrics.frames >= frames_at_swap + 16,
            60,
            "more matches of eileen on v2",
        )
        assert events("grace", "2") == 0, "a person whose consent was withdrawn was matched after the delta"
    finally:
        runtime.request_stop()
        thread.join(30)
    assert not thread.is_alive()
