"""Home Assistant MQTT discovery against a real mosquitto: payloads checked against Home Assistant's documented fields.

The option lists below are Home Assistant's documented configuration variables for MQTT
``event`` and ``binary_sensor`` entities and the discovery message
(home-assistant.io: integrations/event.mqtt, binary_sensor.mqtt, mqtt#discovery-messages).
A key Home Assistant does not know is ignored by it silently, so a typo would cost a
feature without a word: hence the check.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest

from lookout.device.homeassistant import EVENT_TYPE, HomeAssistantConfig, HomeAssistantDiscovery, node_id
from lookout.device.publisher import MemoryPublisher, PahoPublisher
from lookout.mqtt import MqttSettings, make_client

DEVICE_OPTIONS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "name",
    "suggested_area",
    "sw_version",
    "via_device",
}
AVAILABILITY_OPTIONS = {"payload_available", "payload_not_available", "topic", "value_template"}
ORIGIN_OPTIONS = {"name", "sw_version", "support_url"}
COMMON_OPTIONS = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "origin",
    "payload_available",
    "payload_not_available",
    "qos",
    "state_topic",
    "unique_id",
    "value_template",
}
EVENT_OPTIONS = COMMON_OPTIONS | {"device_class", "event_types"}
EVENT_REQUIRED = {"state_topic", "event_types"}
BINARY_SENSOR_OPTIONS = COMMON_OPTIONS | {
    "device_class",
    "expire_after",
    "force_update",
    "off_delay",
    "payload_off",
    "payload_on",
}
BINARY_SENSOR_REQUIRED = {"state_topic"}
ENTITY_CATEGORIES = {"config", "diagnostic"}


def _discovery(publisher, **settings) -> HomeAssistantDiscovery:
    return HomeAssistantDiscovery(
        HomeAssistantConfig(enabled=True, **settings),
        device_id="cam.lobby-01",
        device_name="Lobby camera",
        area="Lobby",
        status_topic="dt/lookout/cam.lobby-01/status",
        event_topic="dt/lookout/cam.lobby-01/homeassistant/match",
        publisher=publisher,
    )


def _check_common(config: dict, options: set[str], required: set[str], device_id: str = "cam.lobby-01") -> None:
    assert set(config) <= options, f"undocumented options: {set(config) - options}"
    assert required <= set(config), f"missing required options: {required - set(config)}"
    assert set(config["device"]) <= DEVICE_OPTIONS and config["device"]["identifiers"]
    assert set(config["origin"]) <= ORIGIN_OPTIONS and config["origin"]["name"]
    assert config["unique_id"].startswith(node_id(device_id))
    for entry in config.get("availability", []):
        assert set(entry) <= AVAILABILITY_OPTIONS and "topic" in entry
    if "entity_category" in config:
        assert config["entity_category"] in ENTITY_CATEGORIES


def test_discovery_configs_use_only_documented_fields():
    discovery = _discovery(MemoryPublisher())
    configs = discovery.configs()
    assert set(configs) == {
        "homeassistant/event/lookout_cam_lobby-01/match/config",
        "homeassistant/binary_sensor/lookout_cam_lobby-01/connectivity/config",
    }
    event = configs["homeassistant/event/lookout_cam_lobby-01/match/config"]
    _check_common(event, EVENT_OPTIONS, EVENT_REQUIRED)
    assert event["event_types"] == [EVENT_TYPE]
    assert event["availability"][0]["topic"] == "dt/lookout/cam.lobby-01/status"
    sensor = configs["homeassistant/binary_sensor/lookout_cam_lobby-01/connectivity/config"]
    _check_common(sensor, BINARY_SENSOR_OPTIONS, BINARY_SENSOR_REQUIRED)
    assert sensor["device_class"] == "connectivity"
    assert (sensor["payload_on"], sensor["payload_off"]) == ("online", "offline")
    assert event["device"] == sensor["device"], "both entities must belong to one Home Assistant device"
    assert event["unique_id"] != sensor["unique_id"]


def test_event_payload_names_only_when_allowed():
    seen = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
    args = dict(event_id="e-1", person_id="p-17", name="Ann Example", score=0.93456, seen_at=seen, location="Lobby")
    without = json.loads(_discovery(MemoryPublisher()).event_payload(**args))
    assert without["event_type"] == EVENT_TYPE and without["person_id"] == "p-17" and "name" not in without
    assert without["seen_at"] == "2026-12-01T12:00:00Z" and without["score"] == 0.935
    with_names = json.loads(_discovery(MemoryPublisher(), names=True).event_payload(**args))
    assert with_names["name"] == "Ann Example"
    assert "crop" not in json.dumps(with_names)


def test_discovery_prefix_is_validated():
    with pytest.raises(ValueError, match="wildcard"):
        HomeAssistantConfig(discovery_prefix="home/#")


class Collector:
    """A Home Assistant stand-in: subscribes to the discovery prefix and the device's topics."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = make_client(MqttSettings(host="127.0.0.1", port=port), client_id=f"ha-{id(self)}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self.lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.02)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.broker
def test_device_announces_itself_and_again_when_home_assistant_returns(mosquitto):
    publisher = PahoPublisher(MqttSettings(host="127.0.0.1", port=mosquitto.port), client_id="cam-ha")
    discovery = _discovery(publisher)
    publisher.on_connect = discovery.announce
    discovery.start()
    publisher.start()
    assert publisher.wait_connected(10)
    configs = discovery.configs()
    try:
        deadline = time.monotonic() + 10
        while discovery.configs_acknowledged < len(configs):  # the broker holds them
            assert time.monotonic() < deadline, "discovery configs not acknowledged"
            time.sleep(0.02)
        # Home Assistant starting later finds the configs retained.
        ha = Collector(mosquitto.port, ["homeassistant/#"])
        ha.wait(lambda: all(ha.on(t) for t in configs), 10, "the retained discovery configs")
        for topic, config in configs.items():
            payload, retained = ha.on(topic)[0]
            assert retained and json.loads(payload) == config
        # Home Assistant restarts: its birth message makes the device announce again.
        before = {t: len(ha.on(t)) for t in configs}
        ha.publish("homeassistant/status", b"online")
        ha.wait(lambda: all(len(ha.on(t)) > before[t] for t in configs), 10, "configs re-published after the birth")
        assert discovery.announcements >= 2
        ha.publish("homeassistant/status", b"offline")  # Home Assistant going away triggers nothing
        ha.close()
    finally:
        publisher.stop()


@pytest.mark.broker
def test_birth_subscription_survives_a_broker_restart(mosquitto):
    publisher = PahoPublisher(MqttSettings(host="127.0.0.1", port=mosquitto.port), client_id="cam-ha2")
    discovery = _discovery(publisher)
    publisher.on_connect = discovery.announce
    discovery.start()
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        mosquitto.stop()
        mosquitto.start()
        deadline = time.monotonic() + 30
        while discovery.announcements < 2:  # the reconnection announces
            assert time.monotonic() < deadline, "no reconnection"
            time.sleep(0.05)
        ha = Collector(mosquitto.port, ["homeassistant/+/+/+/config"])
        count = discovery.announcements
        ha.publish("homeassistant/status", b"online")
        ha.wait(lambda: discovery.announcements > count, 10, "a re-announcement after the birth message")
        ha.close()
    finally:
        publisher.stop()


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.shared
@pytest.mark.parametrize("names", [False, True])
def test_running_device_shows_up_in_home_assistant_and_fires_events(
    tmp_path, mosquitto, faces_dev_gallery, pipeline, names
):
    from lookout.device.config import DeviceConfig
    from lookout.device.runtime import Runtime
    from lookout.device.videomaker import make_hold_video

    video = make_hold_video(tmp_path / "hold.mp4", faces_dev_gallery.faces_dev, seconds=6, fps=5)
    ha = Collector(mosquitto.port, ["homeassistant/#", "dt/lookout/+/homeassistant/match", "dt/lookout/+/match"])
    doc = {
        "device_id": "cam-ha",
        "device_name": "Hall camera",
        "location": {"name": "Hall", "jurisdiction": "GB"},
        "source": {"url": str(video.path), "realtime": False},
        "models": {"device": "CPU"},
        "gallery": {"bundle_dir": str(faces_dev_gallery.bundle), "public_key": str(faces_dev_gallery.public)},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "homeassistant": {"enabled": True, "names": names},
        "clock": "video",
    }
    try:
        runtime = Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline)
        assert runtime.run() == 0
        topic = "homeassistant/event/lookout_cam-ha/match/config"
        ha.wait(lambda: ha.on(topic), 10, "the event entity's config")
        config = json.loads(ha.on(topic)[0][0])
        _check_common(config, EVENT_OPTIONS, EVENT_REQUIRED, "cam-ha")
        assert config["state_topic"] == "dt/lookout/cam-ha/homeassistant/match"
        assert config["device"]["name"] == "Hall camera" and config["device"]["suggested_area"] == "Hall"
        sensor = ha.on("homeassistant/binary_sensor/lookout_cam-ha/connectivity/config")
        assert sensor and json.loads(sensor[0][0])["state_topic"] == "dt/lookout/cam-ha/status"
        ha.wait(lambda: ha.on(config["state_topic"]), 20, "a Home Assistant event for the match")
        events = [json.loads(p) for p, _ in ha.on(config["state_topic"])]
        matches = [json.loads(p) for p, _ in ha.on("dt/lookout/cam-ha/match")]
        assert {e["event_type"] for e in events} == set(config["event_types"])
        assert {e["person_id"] for e in events} == {"sheldon"}
        assert {e["event_id"] for e in events} == {m["event_id"] for m in matches}
        assert all(("name" in e) == names for e in events)
        if names:
            assert events[0]["name"] == "sheldon"
        assert runtime.metrics.events_delivered == len(matches)  # Home Assistant's copies are not counted twice
        assert sorted(m["seq"]["n"] for m in matches) == list(range(1, len(matches) + 1))  # A14: no gaps
        assert all("seq" not in e for e in events)
    finally:
        ha.close()
