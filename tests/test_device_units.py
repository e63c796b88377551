"""Device parts without models or a broker: config, tracker, decision, cooldown, outbox, sources."""

from __future__ import annotations

import ast
import threading
import time

import cv2
import numpy as np
import pytest

from lookout.device.config import load_config
from lookout.device.cooldown import Cooldown
from lookout.device.decision import Decider, Observation
from lookout.device.emitter import encode_crop
from lookout.device.outbox import Outbox, OutboxSender
from lookout.device.publisher import MemoryPublisher
from lookout.device.sources import CaptureSource, FolderSource, FrameGrabber, SourceUnavailable, open_source
from lookout.device.tracker import IouTracker
from lookout.device.videomaker import corrupt_video
from lookout.errors import ConfigError, InputError
from lookout.face.types import Quality
from tests.helpers import PROJECT_ROOT, wait_for

BASE = """
device_id: cam-1
source: {url: video.mp4}
gallery: {bundle_dir: bundle, public_key: key.pem}
"""


# -- config ------------------------------------------------------------------------------


def test_config_yaml_env_and_flags(tmp_path):
    path = tmp_path / "device.yaml"
    path.write_text(BASE + "mqtt: {host: broker.local, port: 1883}\n")
    cfg = load_config(
        path,
        environ={"LOOKOUT_DEVICE__MQTT__PORT": "8883", "LOOKOUT_MODEL_DIR": "/x"},
        overrides=["recognition.k=2", "events.cooldown_s=30"],
    )
    assert cfg.mqtt.host == "broker.local" and cfg.mqtt.port == 8883
    assert cfg.recognition.k == 2 and cfg.events.cooldown_s == 30
    assert cfg.source.url == str(tmp_path / "video.mp4")  # relative to the config file
    assert cfg.gallery.public_key == tmp_path / "key.pem"
    assert cfg.outbox.path == tmp_path / "outbox.sqlite"
    # flags beat the environment, which beats the file
    cfg = load_config(path, environ={"LOOKOUT_DEVICE__MQTT__PORT": "8883"}, overrides=["mqtt.port=1884"])
    assert cfg.mqtt.port == 1884


def test_config_toml(tmp_path):
    path = tmp_path / "device.toml"
    path.write_text(
        'device_id = "cam-2"\n[source]\nurl = "0"\n[gallery]\nstore_dir = "store"\npublic_key = "k.pem"\n'
        "[recognition]\nk = 2\nn = 4\n"
    )
    cfg = load_config(path, environ={})
    assert cfg.device_id == "cam-2" and cfg.source.url == "0" and cfg.recognition.n == 4
    assert isinstance(open_source(cfg.source.url), CaptureSource)


@pytest.mark.parametrize(
    "override, words",
    [
        ("mqtt.port=abc", ["mqtt.port", "valid integer", "'abc'", "--set mqtt.port"]),
        ("recognition.k=9", ["k (9) cannot exceed n (5)"]),
        ("device_id=bad/id", ["device_id", "letters, digits"]),
        ("mqtt.topic_prefix=dt/#", ["wildcard"]),
        ("sourse.url=x", ["sourse", "Extra inputs are not permitted"]),
    ],
)
def test_config_errors_are_clear(tmp_path, override, words):
    path = tmp_path / "device.yaml"
    path.write_text(BASE)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={}, overrides=[override])
    for word in words:
        assert word in str(err.value), str(err.value)


def test_config_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read device config file"):
        load_config(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("device_id: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})
    nogallery = tmp_path / "g.yaml"
    nogallery.write_text("device_id: c\nsource: {url: x.mp4}\n")
    with pytest.raises(ConfigError, match="gallery: set bundle_dir or store_dir"):
        load_config(nogallery, environ={})
    assert load_config(nogallery, environ={}, overrides=["recognition.enabled=false"]).recognition.enabled is False


# -- tracker -------------------------------------------------------------------------------


def box(x, y, w=100):
    return np.array([x, y, x + w, y + w], np.float32)


def test_tracker_follows_moving_faces_and_ends_tracks():
    tracker = IouTracker(iou_threshold=0.3, max_missed=2)
    a, _ = tracker.update([box(0, 0), box(500, 0)], 0)
    b, _ = tracker.update([box(510, 5), box(10, 0)], 1)  # order swapped, both moved
    assert b[0] is a[1] and b[1] is a[0]
    c, _ = tracker.update([box(60, 0)], 2)  # fast move: IoU < 0.3, continued by distance
    assert c[0] is a[0] and a[0].length == 3
    ended = []
    for i in range(3, 7):
        ended += tracker.update([box(60 + i, 0)], i)[1]
    assert a[1] in ended and a[0] not in ended
    new, _ = tracker.update([box(1000, 500)], 7)
    assert new[0].id not in (a[0].id, a[1].id)


# -- decision and cooldown -----------------------------------------------------------------------

Q = Quality(120, 200, 0.0, 1.5, 0.0)


def obs(i, person, score, second=0.5):
    return Observation(i, person, score, second, person)


def test_k_of_n_with_margin_one_event_per_track():
    decider = Decider(k=3, n=5, min_margin=0.05, cooldown=Cooldown(60))
    track = IouTracker().update([box(0, 0)], 0)[0][0]
    decider.offer_crop(track, Q, lambda: np.zeros((10, 10, 3), np.uint8))
    results = [
        decider.observe(track, obs(0, "ann", 0.95), 0.9, 0),
        decider.observe(track, obs(1, "ann", 0.80), 0.9, 0),  # below threshold
        decider.observe(track, obs(2, "ann", 0.93, second=0.92), 0.9, 0),  # margin too small
        decider.observe(track, obs(3, "bob", 0.96), 0.9, 0),
        decider.observe(track, obs(4, "ann", 0.94), 0.9, 0),
    ]
    assert results == [None] * 5  # ann has 2 votes of 5
    assert decider.observe(track, obs(5, "ann", 0.97), 0.9, 1) is None  # obs 0 left the window of 5: still 2
    decision = decider.observe(track, obs(6, "ann", 0.91), 0.9, 1)
    assert decision is not None and decision.person_id == "ann" and decision.votes == 3
    assert decision.score == pytest.approx(0.97) and decision.margin == pytest.approx(0.47)  # the best frame
    assert decision.crop is not None
    assert decider.observe(track, obs(7, "ann", 0.99), 0.9, 2) is None  # decided: one event
    assert not decider.wants_embedding(track, 8, 30)  # no embedding during the cooldown


def test_cooldown_per_person_rearms_tracks():
    cooldown = Cooldown(60)
    decider = Decider(k=1, n=1, cooldown=cooldown)
    t1 = IouTracker().update([box(0, 0)], 0)[0][0]
    t2 = IouTracker().update([box(0, 0)], 0)[0][0]
    assert decider.observe(t1, obs(0, "ann", 0.95), 0.9, 100.0) is not None
    assert decider.observe(t2, obs(0, "ann", 0.95), 0.9, 110.0) is None  # another track, same person, cooling
    assert decider.wants_embedding(t1, 1, 159.0) is False
    assert decider.wants_embedding(t1, 1, 160.0) is True  # cooldown over: recognise afresh
    assert decider.observe(t1, obs(1, "ann", 0.95), 0.9, 160.0) is not None
    assert cooldown.remaining("ann", 170.0) == pytest.approx(50.0)


def test_undecided_tracks_slow_down():
    decider = Decider(k=3, n=5, embed_every=1, slow_embed_every=5)
    track = IouTracker().update([box(0, 0)], 0)[0][0]
    track.embeds, track.last_embed_frame = 15, 10
    assert not decider.wants_embedding(track, 12, 0) and decider.wants_embedding(track, 15, 0)


# -- outbox ----------------------------------------------------------------------------------


def test_outbox_is_durable_and_ordered(tmp_path):
    path = tmp_path / "outbox.sqlite"
    box_ = Outbox(path)
    for i in range(5):
        box_.add(f"id-{i}", "t", f"p{i}".encode(), expires_at=time.time() + 60)
    box_.add("id-0", "t", b"dup", expires_at=0)  # same event id: ignored
    assert box_.count() == 5
    box_._db.close()  # no checkpoint, no clean close: as after a crash
    again = Outbox(path)
    rows = again.pending(10)
    assert [r.event_id for r in rows] == [f"id-{i}" for i in range(5)]
    assert [r.event_id for r in again.pending(2, exclude={rows[0].seq})] == ["id-1", "id-2"]
    again.remove(rows[0].seq)
    assert again.count() == 4
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_outbox_cap_drops_oldest(tmp_path):
    box_ = Outbox(tmp_path / "o.sqlite", max_events=10)
    for i in range(12):
        box_.add(f"id-{i}", "t", b"x", expires_at=0)
    assert box_.count() == 10 and box_.pending(1)[0].event_id == "id-2" and box_.dropped == 2


class SlowAckPublisher(MemoryPublisher):
    """Acknowledges only when told to; refuses while 'offline'. ``looks`` counts the sender's passes
    (each begins by asking whether the publisher is connected)."""

    def __init__(self):
        super().__init__()
        self.acks = []
        self.looks = 0

    @property
    def connected(self) -> bool:
        self.looks += 1
        return self._connected

    def one_pass(self, sender) -> None:
        """Wake the sender and wait until it has made one more pass."""
        before = self.looks
        sender.wake()
        wait_for(lambda: self.looks > before, 5, "a sender pass")

    def publish(self, topic, payload, *, qos=1, retain=False, on_ack=None):
        if not self._connected:
            return False
        self.messages.append((topic, payload, retain))
        self.acks.append(on_ack)
        return True


def test_sender_removes_only_acknowledged_and_sends_oldest_first(tmp_path):
    box_ = Outbox(tmp_path / "o.sqlite")
    pub = SlowAckPublisher()
    sender = OutboxSender(box_, pub, inflight=2, retry_s=0.1).start()
    for i in range(3):
        box_.add(f"id-{i}", "t", f"{i}".encode(), expires_at=time.time() - 1)  # already stale
    pub.one_pass(sender)
    assert pub.messages == []  # offline: nothing sent, nothing lost
    pub.start()
    sender.wake()
    wait_for(lambda: len(pub.messages) >= 2, 3, "the first two events")
    pub.one_pass(sender)  # a third would be sent now if the window let it
    assert [m[1] for m in pub.messages] == [b"0", b"1"]  # window of 2 in flight
    assert box_.count() == 3
    pub.acks[0](True)
    pub.acks[1](False, "quota exceeded")  # refused: stays, retried later
    deadline = time.monotonic() + 3
    while box_.count() != 2 or len(pub.messages) < 4:
        assert time.monotonic() < deadline, pub.messages
        time.sleep(0.02)
    for ack in pub.acks[2:]:
        ack(True)
    assert sender.flush(3) and box_.stale_sent >= 3
    sender.stop()


# -- sources and crops --------------------------------------------------------------------------


def test_corrupt_and_missing_sources(tmp_path):
    grabber = FrameGrabber(open_source(str(corrupt_video(tmp_path / "bad.mp4"))))
    with pytest.raises(InputError, match="cannot be decoded"):
        grabber.start()
    with pytest.raises(InputError, match="does not exist"):
        open_source(str(tmp_path / "missing.mp4")).open()
    with pytest.raises(SourceUnavailable, match="no camera"):
        open_source("37").open()


def test_missing_camera_retries_then_gives_up():
    grabber = FrameGrabber(open_source("37"), backoff=(0.05, 0.1), give_up_after_s=0.4).start()
    deadline = time.monotonic() + 5
    while not grabber.finished:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "gave up" in grabber.error and grabber.get(0.1) is None
    grabber.stop()


def _folder(tmp_path, n=6):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((48, 64, 3), (i * 10) % 256, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    return folder


def test_not_live_reads_every_frame(tmp_path):
    grabber = FrameGrabber(FolderSource(_folder(tmp_path), fps=100), realtime=False).start()
    got = []
    while True:
        frame = grabber.get(1.0)
        if frame is None and grabber.finished:
            break
        if frame is not None:
            got.append(frame.index)
            time.sleep(0.02)  # a slow consumer
    assert got == list(range(6)) and grabber.dropped == 0
    grabber.stop()


def test_live_drops_old_frames_when_behind(tmp_path):
    grabber = FrameGrabber(FolderSource(_folder(tmp_path, 30), fps=200), realtime=True).start()
    wait_for(lambda: grabber.dropped >= 25, 10, "the grabber to run ahead of a busy consumer")
    frame = grabber.get(1.0)
    assert frame is not None and frame.index >= 25 and grabber.dropped >= 25
    grabber.stop()


def test_crop_is_size_capped():
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), np.uint8)
    jpeg = encode_crop(noise, 112, 4096)
    assert jpeg is not None and len(jpeg) <= 4096 and jpeg[:3] == b"\xff\xd8\xff"


def test_tail_formats_events_for_people():
    import uuid
    from datetime import datetime, timedelta, timezone

    from lookout.device.tail import format_match, format_status
    from lookout.events import MatchEvent

    event = MatchEvent.create(
        device_id="cam-1",
        person_id="ann",
        score=0.95,
        margin=0.1,
        track_length=7,
        model={"name": "m", "digest": "0" * 64},
        bundle_version="3",
        policy_version="p",
        box=(1, 2, 3, 4),
        seen_at=datetime.now(timezone.utc) - timedelta(minutes=10),
        event_id=uuid.uuid4(),
    )
    line = format_match(event)
    assert "MATCH" in line and "ann" in line and "score 0.950" in line and "STALE" in line
    assert "online" in format_status({"device_id": "cam-1", "state": "online"})


def test_http_stream_that_drops_is_reopened():
    """An MJPEG-over-HTTP camera that ends its stream, then is down for a while, then comes back."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"up": True, "served": 0, "refused": 0}

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self):
            if not state["up"]:
                state["refused"] += 1
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for i in range(8):  # then the stream drops
                _ok, buf = cv2.imencode(".jpg", np.full((120, 160, 3), i * 20, np.uint8))
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(buf)
                    + buf.tobytes()
                    + b"\r\n"
                )
                state["served"] += 1
                time.sleep(0.02)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://user:secret@127.0.0.1:{server.server_address[1]}/stream.mjpg"
    source = open_source(url)
    assert isinstance(source, CaptureSource) and "secret" not in source.name  # no password in logs
    grabber = FrameGrabber(source, backoff=(0.1, 0.2)).start()
    try:
        wait = time.monotonic() + 10
        while grabber.reopens < 1:
            assert time.monotonic() < wait, "the drop was not noticed"
            grabber.get(0.2)
        state["up"] = False
        wait_for(lambda: state["refused"] >= 2, 10, "two attempts while the camera is down")
        served = state["served"]
        state["up"] = True
        got = 0
        wait = time.monotonic() + 10
        while got < 5:
            assert time.monotonic() < wait, "no frames after the camera came back"
            got += grabber.get(0.2) is not None
        assert state["served"] > served and not grabber.finished
    finally:
        grabber.stop()
        server.shutdown()


def test_runtime_units_set_every_attribute_in_init():
    """A reader of Runtime, FrameLoop, GallerySwap or EventEmitter finds all their state in __init__."""
    late = []
    for name in ("runtime", "frame_loop", "gallery_swap", "emitter", "status"):
        path = PROJECT_ROOT / "device" / f"{name}.py"
        for cls in (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)):
            methods = [m for m in cls.body if isinstance(m, ast.FunctionDef)]

            def assigned(fn: ast.FunctionDef) -> dict[str, int]:
                out = {}
                for node in ast.walk(fn):
                    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                    for t in targets:
                        for el in t.elts if isinstance(t, ast.Tuple) else [t]:
                            if (
                                isinstance(el, ast.Attribute)
                                and isinstance(el.value, ast.Name)
                                and el.value.id == "self"
                            ):
                                out[el.attr] = el.lineno
                return out

            init = next((assigned(m) for m in methods if m.name == "__init__"), {})
            for m in methods:
                if m.name != "__init__":
                    late += [
                        f"{name}.py:{line} {cls.name}.{attr}" for attr, line in assigned(m).items() if attr not in init
                    ]
    assert not late, late
