"""The device over MQTT TLS with client certificates, end to end, against a real mosquitto that requires them.

A device configured as for AWS IoT Core (CA file, client certificate and key) publishes its
status and its match events through the TLS listener; with the wrong CA it refuses the
broker (and says why, once); with a certificate from another authority the broker refuses it.
In both refusals nothing is lost: events wait in the outbox.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import yaml

from lookout.device.config import DeviceConfig, load_config
from lookout.device.publisher import PahoPublisher
from lookout.device.runtime import Runtime
from lookout.device.videomaker import make_hold_video
from lookout.events import parse_match_event
from lookout.mqtt import MqttSettings, TlsSettings, make_client
from tests.pki import make_pki, mosquitto_tls_config

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _tls(pki) -> TlsSettings:
    return TlsSettings(ca_file=pki["ca"], cert_file=pki["client"], key_file=pki["client_key"])


class TlsSubscriber:
    """A subscriber with its own client certificate, collecting everything under dt/lookout/#."""

    def __init__(self, port: int, pki) -> None:
        settings = MqttSettings(host="127.0.0.1", port=port, tls=_tls(pki))
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = make_client(settings, client_id=f"tls-sub-{id(self)}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("dt/lookout/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the TLS subscriber could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload))

    def on(self, suffix: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.shared
def test_device_publishes_matches_through_mutual_tls(tmp_path, mosquitto_factory, pki, faces_dev_gallery, pipeline):
    broker = mosquitto_factory(extra_config=mosquitto_tls_config(pki))
    video = make_hold_video(tmp_path / "hold.mp4", faces_dev_gallery.faces_dev, seconds=8, fps=5)
    # As an operator writes it: a config file with relative certificate paths.
    for name in ("ca", "client", "client_key"):
        (tmp_path / pki[name].name).write_bytes(pki[name].read_bytes())
    config_file = tmp_path / "device.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "device_id": "cam-tls",
                "location": {"jurisdiction": "GB"},
                "source": {"url": str(video.path), "realtime": False},
                "models": {"device": "CPU"},
                "gallery": {"bundle_dir": str(faces_dev_gallery.bundle), "public_key": str(faces_dev_gallery.public)},
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": broker.port,
                    "client_id": "cam-tls",
                    "tls": {
                        "ca_file": pki["ca"].name,
                        "cert_file": pki["client"].name,
                        "key_file": pki["client_key"].name,
                    },
                },
                "outbox": {"path": "outbox.sqlite"},
                "clock": "video",
            }
        )
    )
    cfg = load_config(config_file)
    assert cfg.mqtt.tls is not None and cfg.mqtt.tls.ca_file == tmp_path / pki["ca"].name
    subscriber = TlsSubscriber(broker.port, pki)
    try:
        runtime = Runtime(cfg, pipeline=pipeline)
        assert runtime.run() == 0
        _wait(lambda: subscriber.on("/match"), 20, "a match event through TLS")
        events = [parse_match_event(p) for p in subscriber.on("/match")]
        assert {e.person_id for e in events} == {"sheldon"} and all(e.device_id == "cam-tls" for e in events)
        states = [json.loads(p)["state"] for p in subscriber.on("cam-tls/status")]
        assert states[0] == "online" and states[-1] == "offline"
    finally:
        subscriber.close()


def _publisher_log(caplog, settings: MqttSettings, seconds: float) -> tuple[bool, list[logging.LogRecord]]:
    """Start the device's publisher for a bounded window: (did it connect, its log records)."""
    publisher = PahoPublisher(settings, client_id="cam-refused")
    with caplog.at_level(logging.INFO, logger="lookout.device.publisher"):
        publisher.start()
        try:
            connected = publisher.wait_connected(seconds)
            if not connected:
                _wait(lambda: publisher.last_failure, 10, "a failed connection attempt")
        finally:
            publisher.stop()
    return connected, [r for r in caplog.records if r.name == "lookout.device.publisher"]


def test_device_refuses_a_broker_certificate_from_the_wrong_ca(tmp_path, mosquitto_factory, pki, caplog):
    broker = mosquitto_factory(extra_config=mosquitto_tls_config(pki))
    other = make_pki(tmp_path / "other", "other")
    settings = MqttSettings(
        host="127.0.0.1",
        port=broker.port,
        tls=TlsSettings(ca_file=other["ca"], cert_file=pki["client"], key_file=pki["client_key"]),
    )
    connected, records = _publisher_log(caplog, settings, 3)
    assert not connected
    failures = [r for r in records if r.getMessage() == "mqtt.tls_failed"]
    assert len(failures) == 1, "a TLS refusal is reported once, not at every retry"
    assert "certificate verify failed" in failures[0].lookout_fields["reason"]


def test_broker_refuses_a_device_certificate_from_another_authority(tmp_path, mosquitto_factory, pki, caplog):
    broker = mosquitto_factory(extra_config=mosquitto_tls_config(pki))
    other = make_pki(tmp_path / "other", "other")
    settings = MqttSettings(
        host="127.0.0.1",
        port=broker.port,
        tls=TlsSettings(ca_file=pki["ca"], cert_file=other["client"], key_file=other["client_key"]),
    )
    connected, records = _publisher_log(caplog, settings, 3)
    assert not connected
    failures = [r for r in records if r.getMessage() == "mqtt.tls_failed"]
    assert failures and "unknown ca" in failures[0].lookout_fields["reason"].lower()


@pytest.mark.shared
def test_events_wait_in_the_outbox_while_tls_is_refused(tmp_path, mosquitto_factory, pki, faces_dev_gallery, pipeline):
    """A device that cannot get through TLS keeps its matches and sends them once the CA is fixed."""
    broker = mosquitto_factory(extra_config=mosquitto_tls_config(pki))
    other = make_pki(tmp_path / "other", "other")
    video = make_hold_video(tmp_path / "hold.mp4", faces_dev_gallery.faces_dev, seconds=4, fps=5)
    doc = {
        "device_id": "cam-tls2",
        "location": {"jurisdiction": "GB"},
        "source": {"url": str(video.path), "realtime": False},
        "models": {"device": "CPU"},
        "gallery": {"bundle_dir": str(faces_dev_gallery.bundle), "public_key": str(faces_dev_gallery.public)},
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker.port,
            "tls": {"ca_file": str(other["ca"]), "cert_file": str(pki["client"]), "key_file": str(pki["client_key"])},
        },
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "flush_at_end_s": 0},
        "clock": "video",
    }
    runtime = Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline)
    assert runtime.run() == 0
    assert runtime.events_emitted >= 1
    kept = runtime.events_emitted
    doc["mqtt"]["tls"]["ca_file"] = str(pki["ca"])  # fixed; a video with nobody in it
    doc["source"]["url"] = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "black.png").write_bytes(_black_png())
    doc["outbox"]["flush_at_end_s"] = 15
    subscriber = TlsSubscriber(broker.port, pki)
    try:
        assert Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline).run() == 0
        _wait(lambda: len(subscriber.on("/match")) >= kept, 20, "the kept events")
    finally:
        subscriber.close()


def _black_png() -> bytes:
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".png", np.zeros((120, 160, 3), np.uint8))
    assert ok
    return buf.tobytes()
