"""The fleet as the broker sees it: each device's retained status and its heartbeats.

The console subscribes to ``<prefix>/+/status`` (retained: on connecting it learns every device's last state at
once) and ``<prefix>/+/heartbeat``. A device is online when its last status says so and a heartbeat arrived
within ``offline_after_s``; its last will (``offline``, retained) turns it offline as soon as its connection
drops. Nothing here is about a face; the last match per device comes from the relay's history.

The watcher runs paho's network loop in a thread of its own: should that thread ever end (a bug in a callback,
paho itself), :attr:`FleetWatcher.stopped` says when and why, and the fleet page says so instead of showing the
last states it saw as a live fleet (attack finding A12).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as paho

from lookout.events import DeviceStatus, Heartbeat, read_json
from lookout.log import get_logger
from lookout.mqtt import MqttSettings, connect, make_client
from lookout.topics import Topics

log = get_logger(__name__)


@dataclass(frozen=True)
class DeviceState:
    device_id: str
    state: str = "unknown"  # online | offline | unknown (no status seen)
    status_at: float | None = None
    version: str | None = None
    bundle_version: str | None = None
    heartbeat_at: float | None = None  # when the console received it
    fps: float | None = None
    queue_depth: int | None = None
    uptime_s: float | None = None

    def online(self, now: float, offline_after_s: float) -> bool:
        if self.state != "online":
            return False
        last = self.heartbeat_at or self.status_at or 0.0
        return now - last <= offline_after_s


class FleetWatcher:
    def __init__(
        self, mqtt: MqttSettings, topics: Topics, offline_after_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = mqtt
        self.topics = topics
        self.offline_after_s = offline_after_s
        self.clock = clock
        self.devices: dict[str, DeviceState] = {}
        self.connected = threading.Event()
        self.stopped: tuple[float, str] | None = None  # (when, why) the network thread ended unasked
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.client = make_client(mqtt, client_id="")  # a random id: never take over a relay's or device's session
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> FleetWatcher:
        connect(self.client, self.settings.model_copy(update={"clean_start": True, "session_expiry": 0}))
        self._thread = threading.Thread(target=self._loop, name="console-fleet", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        """paho's network loop (it reconnects by itself); whatever ends it unasked is recorded and logged."""
        why = "the network loop returned"
        try:
            self.client.loop_forever(retry_first_connection=True)
        except Exception as err:
            why = f"{type(err).__name__}: {str(err)[:200]}"
        if self._stopping.is_set():
            return
        self.connected.clear()
        self.stopped = (self.clock(), why)
        log.error("fleet.watcher_stopped", error=why, hint="the fleet page says so; restart the console")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stopping.set()
        self.client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def snapshot(self) -> list[tuple[DeviceState, bool]]:
        now = self.clock()
        with self._lock:
            states = sorted(self.devices.values(), key=lambda d: d.device_id)
        return [(d, d.online(now, self.offline_after_s)) for d in states]

    def _on_connect(self, client: paho.Client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("fleet.refused", reason=str(reason_code))
            return
        client.subscribe([(self.topics.status_filter(), 1), (self.topics.heartbeat_filter(), 0)])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.connected.set()
        log.info("fleet.watching", status=self.topics.status_filter())

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        device = self.topics.device_of(msg.topic)
        if device is None:
            return
        try:
            if msg.topic.endswith("/status"):
                self._status(device, msg.payload)
            elif msg.topic.endswith("/heartbeat"):
                self._heartbeat(device, msg.payload)
        except Exception as err:  # one device's message (``[[[[`` 60,000 deep, a 5,000-digit number) or a bug
            # here must never end paho's network thread, which would stop the fleet page for every device
            log.warning("fleet.bad_message", topic=msg.topic, error=f"{type(err).__name__}: {str(err)[:200]}")

    def _update(self, device: str, **fields) -> None:
        with self._lock:
            current = self.devices.get(device) or DeviceState(device)
            self.devices[device] = replace(current, **fields)

    def _status(self, device: str, payload: bytes | bytearray) -> None:
        if not payload:  # a cleared retained status: the device was retired
            with self._lock:
                self.devices.pop(device, None)
            return
        status = DeviceStatus.model_validate(read_json(payload, f"status of {device}"), strict=False)
        if status.device_id != device:
            raise ValueError(f"device_id {status.device_id!r} differs from the topic's {device!r}")
        fields: dict[str, Any] = {"state": status.state, "status_at": status.at.timestamp(), "version": status.version}
        if status.bundle_version:
            fields["bundle_version"] = status.bundle_version
        self._update(device, **fields)

    def _heartbeat(self, device: str, payload: bytes | bytearray) -> None:
        beat = Heartbeat.model_validate(read_json(payload, f"heartbeat of {device}"), strict=False)
        if beat.device_id != device:
            raise ValueError(f"device_id {beat.device_id!r} differs from the topic's {device!r}")
        fields: dict[str, Any] = {
            "heartbeat_at": self.clock(),
            "fps": beat.fps,
            "queue_depth": beat.queue_depth,
            "uptime_s": beat.uptime_s,
        }
        if beat.bundle_version:
            fields["bundle_version"] = beat.bundle_version
        with self._lock:
            known = self.devices.get(device)
        if known is None or known.state == "unknown":
            fields["state"] = "online"  # heartbeats without a retained status (e.g. the console started late)
        self._update(device, **fields)
