"""Home Assistant MQTT discovery: the device shows up in Home Assistant by itself (off by default).

With ``homeassistant.enabled: true`` the device announces, under the discovery prefix
(default ``homeassistant``), one Home Assistant *device* with two entities:

- an ``event`` entity, "Face match", that fires once per match: ``event_type`` ``match``
  with the person id, the score, when and where; the person's **name only if**
  ``homeassistant.names: true`` (names are personal data that a home automation
  system, its history database and its add-ons then hold);
- a ``binary_sensor`` of class ``connectivity``: on while the device is connected.

Availability comes from the device's retained status topic (``online``/``offline``, the
latter also as MQTT last will), so Home Assistant marks the event entity unavailable
when the device is gone. Configs are published retained at every connection and again
whenever Home Assistant says it is back (``<prefix>/status`` = ``online``, its birth
message), as Home Assistant's documentation recommends.

Discovery payload fields are Home Assistant's documented options for MQTT ``event`` and
``binary_sensor`` entities (https://www.home-assistant.io/integrations/event.mqtt,
/binary_sensor.mqtt, /mqtt#discovery-messages), unabbreviated. No face image ever goes
to Home Assistant: the events carry ids and scores only.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from lookout import __version__
from lookout.log import get_logger
from lookout.topics import TopicPrefix

log = get_logger(__name__)

EVENT_TYPE = "match"
OUTBOX_ID_PREFIX = "ha-"  # outbox rows of Home Assistant events: "ha-<match event id>"
SUPPORT_URL = "https://github.com/lookout-project/lookout"
_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")


class HomeAssistantConfig(BaseModel):
    """``homeassistant`` section of the device config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="announce this device to Home Assistant (MQTT discovery)")
    discovery_prefix: TopicPrefix = Field("homeassistant", description="Home Assistant's MQTT discovery prefix")
    names: bool = Field(False, description="put the matched person's name in Home Assistant events (personal data)")

    @property
    def birth_topic(self) -> str:
        """Where Home Assistant says ``online`` when it (re)starts."""
        return f"{self.discovery_prefix}/status"


def node_id(device_id: str) -> str:
    """The device id as Home Assistant allows it in discovery topics and ids ([a-zA-Z0-9_-])."""
    return "lookout_" + _NOT_ID.sub("_", device_id)


class DiscoveryPublisher(Protocol):
    """What this module needs of the device's MQTT publisher (``lookout.device.publisher.EventPublisher``)."""

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        on_ack: Callable[..., None] | None = None,
    ) -> bool: ...

    def subscribe(self, topic: str, on_message: Callable[[bytes], None]) -> bool: ...


class HomeAssistantDiscovery:
    """Builds and publishes the discovery configs; turns a match into a Home Assistant event."""

    def __init__(
        self,
        settings: HomeAssistantConfig,
        *,
        device_id: str,
        device_name: str | None,
        area: str | None,
        status_topic: str,
        event_topic: str,
        publisher: DiscoveryPublisher,
    ) -> None:
        self.settings = settings
        self.device_id = device_id
        self.device_name = device_name or device_id
        self.area = area
        self.status_topic = status_topic
        self.event_topic = event_topic
        self.publisher = publisher
        self.node = node_id(device_id)
        self.announcements = 0
        self.configs_acknowledged = 0  # by the broker, over the device's life
        self._lock = threading.Lock()

    # -- what is announced ----------------------------------------------------------------
    def device_block(self) -> dict[str, Any]:
        block: dict[str, Any] = {
            "identifiers": [self.node],
            "name": self.device_name,
            "manufacturer": "Lookout",
            "model": "Lookout face recognition device",
            "sw_version": __version__,
        }
        if self.area:
            block["suggested_area"] = self.area
        return block

    def origin_block(self) -> dict[str, str]:
        return {"name": "lookout", "sw_version": __version__, "support_url": SUPPORT_URL}

    def availability(self) -> list[dict[str, str]]:
        return [
            {
                "topic": self.status_topic,
                "value_template": "{{ value_json.state }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ]

    def config_topic(self, component: str, object_id: str) -> str:
        return f"{self.settings.discovery_prefix}/{component}/{self.node}/{object_id}/config"

    def configs(self) -> dict[str, dict[str, Any]]:
        """Discovery topic -> config, for every entity of this device."""
        common = {"device": self.device_block(), "origin": self.origin_block()}
        event = {
            **common,
            "name": "Face match",
            "unique_id": f"{self.node}_match",
            "object_id": f"{self.node}_match",
            "state_topic": self.event_topic,
            "event_types": [EVENT_TYPE],
            "availability": self.availability(),
            "availability_mode": "latest",
            "qos": 1,
            "icon": "mdi:face-recognition",
        }
        connectivity = {
            **common,
            "name": "Connected",
            "unique_id": f"{self.node}_connectivity",
            "object_id": f"{self.node}_connectivity",
            "state_topic": self.status_topic,
            "value_template": "{{ value_json.state }}",
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "qos": 1,
        }
        return {
            self.config_topic("event", "match"): event,
            self.config_topic("binary_sensor", "connectivity"): connectivity,
        }

    # -- publishing ---------------------------------------------------------------------
    def start(self) -> None:
        """Listen for Home Assistant's birth message (re-announce when it comes back)."""
        if not self.publisher.subscribe(self.settings.birth_topic, self._on_birth):
            log.warning(
                "homeassistant.no_birth_subscription",
                hint="this transport cannot subscribe; configs are still published retained at every connection",
            )

    def announce(self) -> int:
        """Publish every config, retained, QoS 1; returns how many were accepted."""
        sent = 0
        for topic, config in self.configs().items():
            sent += bool(
                self.publisher.publish(topic, json.dumps(config).encode(), qos=1, retain=True, on_ack=self._acked)
            )
        self.announcements += 1
        log.info("homeassistant.announced", configs=sent, prefix=self.settings.discovery_prefix, node=self.node)
        return sent

    def _acked(self, ok: bool, reason: str = "") -> None:
        if ok:
            with self._lock:
                self.configs_acknowledged += 1
        else:
            log.warning("homeassistant.config_refused", reason=reason)

    def withdraw(self) -> int:
        """Remove this device from Home Assistant (empty retained configs), e.g. when decommissioning it."""
        return sum(bool(self.publisher.publish(topic, b"", qos=1, retain=True)) for topic in self.configs())

    def _on_birth(self, payload: bytes) -> None:
        if payload.strip() == b"online":
            log.info("homeassistant.online", action="announcing again")
            self.announce()

    def event_payload(
        self,
        *,
        event_id: str,
        person_id: str,
        name: str | None,
        score: float,
        seen_at: datetime,
        location: str | None = None,
    ) -> bytes:
        """The Home Assistant event for one match: ids and score; the name only where allowed."""
        doc: dict[str, Any] = {
            "event_type": EVENT_TYPE,
            "person_id": person_id,
            "score": round(float(score), 3),
            "seen_at": seen_at.isoformat().replace("+00:00", "Z"),
            "device_id": self.device_id,
            "event_id": event_id,
        }
        if location:
            doc["location"] = location
        if self.settings.names and name:
            doc["name"] = name
        return json.dumps(doc).encode()
