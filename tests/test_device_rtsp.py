"""The device's camera source against a real RTSP server (GStreamer's, on loopback) serving live 720p H.264."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lookout.device.config import DeviceConfig
from lookout.device.publisher import MemoryPublisher
from lookout.device.runtime import Runtime
from lookout.device.sources import CaptureSource, FrameGrabber, open_source
from lookout.device.videomaker import make_hold_video
from lookout.events import parse_match_event
from lookout.rtsp_server import read_stamp, video_frames, write_i420_frames

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]


def _frames(grabber: FrameGrabber, count: int, timeout: float, *, newer_than: float = 0.0) -> list:
    """``count`` frames from the grabber (stamped after ``newer_than``), or fail after ``timeout`` s."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} frames within {timeout} s"
        assert not grabber.finished, grabber.error
        frame = grabber.get(timeout=0.5)
        if frame is not None and (not newer_than or (read_stamp(frame.image) or 0.0) > newer_than):
            got.append(frame)
    return got


def test_device_reads_a_live_720p_h264_rtsp_stream(rtsp_camera):
    source = open_source(rtsp_camera.url)
    assert isinstance(source, CaptureSource) and source.live
    grabber = FrameGrabber(source).start()
    try:
        frames = _frames(grabber, 25, timeout=30)
    finally:
        grabber.stop()
    assert {f.image.shape for f in frames} == {(720, 1280, 3)}
    stamps = [read_stamp(f.image) for f in frames]
    assert all(s is not None for s in stamps), "a frame lost its capture stamp (decoding damaged it)"
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "frames out of order or repeated"
    ages = [f_grab - s for f_grab, s in zip([time.time()] * len(stamps), stamps)]
    assert max(ages) < 30  # fresh frames, not a replay


@pytest.mark.slow
def test_device_survives_the_rtsp_server_restarting(rtsp_camera):
    grabber = FrameGrabber(open_source(rtsp_camera.url), backoff=(0.2, 1.0)).start()
    try:
        _frames(grabber, 5, timeout=30)
        rtsp_camera.stop()  # the camera reboots
        deadline = time.monotonic() + 30
        while grabber.reopens < 1 or grabber.attempts < 2:  # the loss noticed, reopening tried and refused
            assert time.monotonic() < deadline, "the outage was not noticed"
            grabber.get(timeout=0.05)
        down_since = time.monotonic()
        while time.monotonic() - down_since < 1.5:  # the device polls as it does when idle
            grabber.get(timeout=0.005)
        tried = grabber.attempts
        # backoff 0.2 s doubling to 1 s: at most ~5 attempts in the 1.5 s window plus the two above
        assert tried <= 8, f"{tried} attempts: the backoff was not respected"
        restarted = time.time()
        rtsp_camera.start()  # same port
        after = _frames(grabber, 5, timeout=30, newer_than=restarted)
        assert not grabber.finished
    finally:
        grabber.stop()
    assert rtsp_camera.starts == 2
    assert all(read_stamp(f.image) > restarted for f in after)


def test_rtsp_frames_from_a_video(rtsp_camera_factory, tmp_path):
    """A camera playing given pictures (what the device tests and the bench use): the pictures arrive."""
    colours = [(0, 0, 200), (0, 200, 0), (200, 0, 0)]
    pictures = [np.full((360, 640, 3), c, np.uint8) for c in colours]
    path = tmp_path / "frames.i420"
    assert write_i420_frames(pictures, path) == 3
    camera = rtsp_camera_factory(width=640, height=360, fps=10, frames=path, hold=3)
    grabber = FrameGrabber(open_source(camera.url)).start()
    try:
        frames = _frames(grabber, 20, timeout=30)
    finally:
        grabber.stop()
    seen = set()
    for frame in frames:
        centre = frame.image[180, 320].astype(int)
        seen |= {i for i, c in enumerate(colours) if np.abs(centre - np.array(c)).max() < 40}
    assert seen == {0, 1, 2}


def test_unreachable_rtsp_camera_is_reported_without_its_password():
    source = open_source("rtsp://admin:hunter2@127.0.0.1:9/stream")
    assert "hunter2" not in source.name and "admin" in source.name


@pytest.mark.slow
@pytest.mark.shared
def test_device_recognises_a_person_on_a_live_rtsp_camera(rtsp_camera_factory, tmp_path, faces_dev_gallery, pipeline):
    """The whole device on a real RTSP camera: H.264 decoded, faces found, the person matched, the event out."""
    video = make_hold_video(tmp_path / "hold.mp4", faces_dev_gallery.faces_dev, seconds=4, fps=5)
    frames = tmp_path / "camera.i420"
    assert write_i420_frames(video_frames(video.path), frames) >= video.frames - 2  # mp4v may drop the last
    camera = rtsp_camera_factory(fps=10, frames=frames, hold=2)
    publisher = MemoryPublisher()
    doc = {
        "device_id": "cam-rtsp",
        "location": {"jurisdiction": "GB"},
        "source": {"url": camera.url},
        "models": {"device": "CPU"},
        "gallery": {"bundle_dir": str(faces_dev_gallery.bundle), "public_key": str(faces_dev_gallery.public)},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
    }
    runtime = Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline, publisher=publisher)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not any(t.endswith("/match") for t, _, _ in publisher.messages):
            assert time.monotonic() < deadline, f"no match after {runtime.metrics.frames} frames from the camera"
            assert thread.is_alive(), "the device stopped"
            time.sleep(0.1)
    finally:
        runtime.request_stop()
        thread.join(30)
    events = [parse_match_event(p) for t, p, _ in publisher.messages if t.endswith("/match")]
    assert {e.person_id for e in events} == {"sheldon"} and runtime.metrics.frames >= 3
    assert not thread.is_alive()
