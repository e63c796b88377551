"""How events leave the device: the :class:`EventPublisher` interface and its paho (MQTT) form.

The runtime and the outbox only use this interface, so another transport (AWS IoT
Greengrass IPC, where the nucleus owns the MQTT connection) is one more class:

- ``start()`` / ``stop()``; ``connected`` tells whether a publish can go out now;
- ``publish(topic, payload, qos=1, retain=False, on_ack=None) -> bool``: True when the
  message was accepted for delivery; ``on_ack(ok, reason)`` is then called exactly once,
  from any thread, when the broker acknowledged it (ok=True) or refused it (ok=False).
  False means "not now" (e.g. disconnected); the caller keeps the event and retries.
  ``on_ack`` must not be called while the publisher holds a lock ``publish`` needs;
- ``on_connect``: a callback the runtime sets, run after every (re)connection (the
  runtime publishes its retained online status there);
- ``owns_connection``: True when this process owns the MQTT connection and can set a
  last will (paho); False under Greengrass (status is then published on start and on
  clean stop only);
- ``subscribe(topic, on_message) -> bool``: receive messages on a topic, kept across
  reconnections (Home Assistant's birth message); False where the transport cannot.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

import paho.mqtt.client as paho

from lookout.log import get_logger
from lookout.mqtt import MqttSettings, connect, make_client

log = get_logger(__name__)

AckCallback = Callable[..., None]  # (ok: bool, reason: str = "")
MessageCallback = Callable[[bytes], None]  # (payload)


class EventPublisher(ABC):
    owns_connection: bool = False
    on_connect: Callable[[], None] | None = None

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self, timeout: float = 5.0) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, on_ack: AckCallback | None = None
    ) -> bool: ...

    def subscribe(self, topic: str, on_message: MessageCallback) -> bool:
        """Receive messages on ``topic`` (QoS 1) for as long as the publisher runs; False: not supported."""
        return False


class PahoPublisher(EventPublisher):
    """MQTT v5 over paho-mqtt 2.x (VERSION2 callbacks), reconnecting by itself with backoff."""

    owns_connection = True

    def __init__(
        self, settings: MqttSettings, *, client_id: str, will: tuple[str, bytes, int, bool] | None = None
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.client = make_client(settings, client_id=client_id, will=will)
        self.client.max_inflight_messages_set(1000)  # the outbox bounds what is in flight
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_log = self._on_log
        self._socket_error = ""
        self._last_fail_log = float("-inf")
        self._last_tls_failure = ""
        self.last_failure = ""  # why the last connection attempt failed, for logs and readiness
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict[int, AckCallback | None] = {}
        self._early: dict[int, tuple[bool, str]] = {}  # acks that came before publish() returned the mid
        self.disconnects = 0
        self._stopping = False
        self._subscriptions: dict[str, MessageCallback] = {}

    def start(self) -> None:
        connect(self.client, self.settings, blocking=False, client_id=self.client_id)
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, on_ack: AckCallback | None = None
    ) -> bool:
        if not self.connected:
            return False
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        # NO_CONN: paho stored the message and sends it on reconnect, so it is accepted all the same.
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            log.warning("mqtt.publish_failed", topic=topic, rc=paho.error_string(info.rc))
            return False
        if qos == 0:
            if on_ack:
                on_ack(True)
            return True
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = on_ack
        if early is not None and on_ack:
            on_ack(*early)
        return True

    def subscribe(self, topic: str, on_message: MessageCallback) -> bool:
        """Subscribed now if connected, and again after every reconnection (sessions may be clean)."""
        self._subscriptions[topic] = on_message
        self.client.message_callback_add(topic, lambda client, userdata, msg: self._deliver(on_message, msg))
        if self.connected:
            self.client.subscribe(topic, qos=1)
        return True

    def _deliver(self, on_message: MessageCallback, msg: paho.MQTTMessage) -> None:
        try:
            on_message(bytes(msg.payload))
        except Exception as err:  # a subscriber's bug must not take the network thread down
            log.error("mqtt.on_message_failed", topic=msg.topic, error=repr(err))

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self._connected.clear()

    # -- paho callbacks (network thread) -------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning(
                "mqtt.connect_refused", reason=str(reason_code), host=self.settings.host, port=self.settings.port
            )
            return
        self._connected.set()
        log.info("mqtt.connected", host=self.settings.host, port=self.settings.port)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        if self.on_connect:
            try:
                self.on_connect()
            except Exception as err:
                log.error("mqtt.on_connect_failed", error=repr(err))

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its ``except OSError`` block: the exception in hand says why.
        error = sys.exc_info()[1]
        self._refused(str(error) if error is not None else "unknown", tls=isinstance(error, ssl.SSLError))

    def _on_log(self, client, userdata, level: int, message: str) -> None:
        """Keep paho's socket errors: a broker refusing our certificate shows only here (TLS 1.3 alerts
        arrive after the handshake, as a failed read and a disconnect)."""
        if level == paho.MQTT_LOG_ERR and message.startswith("failed to receive on socket"):
            self._socket_error = message.split(": ", 1)[-1]

    def _refused(self, reason: str, *, tls: bool) -> None:
        """A connection attempt failed: TLS refusals once per distinct reason (retrying does not heal
        them), anything else at most every 30 s."""
        self.last_failure = reason
        now = time.monotonic()
        if tls and reason != self._last_tls_failure:
            self._last_tls_failure = reason
            log.error(
                "mqtt.tls_failed",
                host=self.settings.host,
                port=self.settings.port,
                reason=reason,
                hint="check mqtt.tls.ca_file (the broker's CA) and the client certificate and key; retrying with backoff",
            )
        elif not tls and now - self._last_fail_log >= 30:
            self._last_fail_log = now
            log.warning(
                "mqtt.unreachable",
                host=self.settings.host,
                port=self.settings.port,
                reason=reason,
                hint="events wait in the outbox; retrying with backoff",
            )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        socket_error, self._socket_error = self._socket_error, ""
        if was and not self._stopping:
            self.disconnects += 1
            log.warning("mqtt.disconnected", reason=socket_error or str(reason_code), will_retry=True)
        elif not was and not self._stopping:  # dropped before the broker accepted us
            reason = socket_error or str(reason_code)
            self._refused(reason, tls="SSL" in reason or "alert" in reason)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        ok = not reason_code.is_failure
        reason = "" if ok else str(reason_code)
        with self._lock:
            if mid in self._pending:
                callback = self._pending.pop(mid)
            else:
                self._early[mid] = (ok, reason)
                return
        if callback:
            callback(ok, reason)


class MemoryPublisher(EventPublisher):
    """Keeps messages in a list and acknowledges each at once: tests, and benchmarks without a broker."""

    owns_connection = True

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscriptions: dict[str, MessageCallback] = {}
        self._connected = False
        self._lock = threading.Lock()

    def subscribe(self, topic: str, on_message: MessageCallback) -> bool:
        self.subscriptions[topic] = on_message
        return True

    def start(self) -> None:
        self._connected = True
        if self.on_connect:
            self.on_connect()

    def stop(self, timeout: float = 5.0) -> None:
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    def publish(self, topic, payload, *, qos=1, retain=False, on_ack=None) -> bool:
        if not self._connected:
            return False
        with self._lock:
            self.messages.append((topic, payload, retain))
        if on_ack:
            on_ack(True)
        return True
