"""The device's /healthz and /readyz beside /metrics: alive from the start, ready only when models and gallery
are loaded, frames flow and the broker is connected (and not ready again while the broker is away)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from lookout.device.config import DeviceConfig
from lookout.device.runtime import Runtime
from lookout.device.videomaker import make_hold_video

pytestmark = [pytest.mark.broker, pytest.mark.shared, pytest.mark.slow]


def _get(url: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as err:
        body, status = err.read().decode(), err.code
    try:
        return status, json.loads(body)
    except json.JSONDecodeError:
        return status, body


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_health_and_readiness_follow_the_device(tmp_path, mosquitto, faces_dev_gallery, pipeline):
    video = make_hold_video(tmp_path / "hold.mp4", faces_dev_gallery.faces_dev, seconds=4, fps=5)
    mosquitto.stop()  # the broker is away when the device starts
    doc = {
        "device_id": "cam-health",
        "location": {"jurisdiction": "GB"},
        "source": {"url": str(video.path), "realtime": True, "loop": True},
        "models": {"device": "CPU"},
        "gallery": {"bundle_dir": str(faces_dev_gallery.bundle), "public_key": str(faces_dev_gallery.public)},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "status": {"metrics_port": 0},
    }
    runtime = Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        server = _wait(lambda: runtime.metrics_server, 30, "the metrics server")
        base = f"http://127.0.0.1:{server.port}"
        assert _get(f"{base}/healthz")[0] == 200
        # Frames flow with models and gallery, but the broker is down: alive, not ready, and it says why.
        _wait(lambda: runtime.ready.is_set(), 30, "frames processed")
        status, body = _get(f"{base}/readyz")
        assert status == 503 and isinstance(body, dict)
        assert body["checks"]["models"] and body["checks"]["gallery"] and body["checks"]["processing"]
        assert body["checks"]["broker_connected"] is False
        mosquitto.start()
        _wait(lambda: _get(f"{base}/readyz")[0] == 200, 30, "ready once the broker is back")
        assert "lookout_frames_total" in _get(f"{base}/metrics")[1]
        mosquitto.stop()
        _wait(lambda: _get(f"{base}/readyz")[0] == 503, 30, "not ready while the broker is away")
        assert _get(f"{base}/healthz")[0] == 200
    finally:
        runtime.request_stop()
        thread.join(30)
    assert not thread.is_alive()
