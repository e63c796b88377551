"""Device events over AWS IoT Greengrass IPC: ``publish_to_iot_core``, QoS 1.

Under Greengrass the nucleus owns the one MQTT connection to AWS IoT Core; a
component hands it messages over IPC and the nucleus spools them while the core
device is offline. This is :class:`lookout.device.publisher.EventPublisher` in that
form, so the durable outbox stays in front of it exactly as in front of paho:

- an acknowledgement (``on_ack(True)``) means the **nucleus accepted and spooled**
  the message, not that AWS IoT Core received it. The outbox then forgets the event;
  from there on delivery is the nucleus's (configure its spooler for disk storage,
  see docs/deployment.md, or a nucleus restart while offline loses what it spooled
  in memory). A refusal (spooler full, not authorized, payload too large) is
  ``on_ack(False, reason)`` and the outbox retries later;
- there is no last will under Greengrass (``owns_connection`` is False): the runtime
  publishes a retained status on start and on clean stop;
- the IPC client comes from the optional ``awsiotsdk`` package
  (``pip install 'lookout[greengrass]'``), imported only when this publisher starts.

Selection (:func:`choose_publisher_kind`): config ``publisher: greengrass|mqtt|auto``;
``auto`` means Greengrass IPC when the nucleus started this process (it sets
``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` and ``SVCUID``), else MQTT.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from lookout.device.publisher import AckCallback, EventPublisher
from lookout.errors import ConfigError
from lookout.log import get_logger

log = get_logger(__name__)

SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
TOKEN_ENV = "SVCUID"
KINDS = ("auto", "greengrass", "mqtt")
INSTALL_HINT = "install the Greengrass extra: pip install 'lookout[greengrass]' (the awsiotsdk package)"


def in_greengrass(environ: Mapping[str, str]) -> bool:
    """True when the Greengrass nucleus started this process (IPC socket and token in the environment)."""
    return bool(environ.get(SOCKET_ENV)) and bool(environ.get(TOKEN_ENV))


def choose_publisher_kind(setting: str, environ: Mapping[str, str]) -> str:
    """``greengrass`` or ``mqtt`` from the configured ``publisher`` setting and the environment."""
    setting = (setting or "auto").strip().lower()
    if setting not in KINDS:
        raise ConfigError(f"publisher {setting!r}: expected one of {', '.join(KINDS)}")
    if setting == "auto":
        return "greengrass" if in_greengrass(environ) else "mqtt"
    if setting == "greengrass" and not in_greengrass(environ):
        raise ConfigError(
            f"publisher greengrass: not running under the Greengrass nucleus ({SOCKET_ENV} and "
            f"{TOKEN_ENV} are not set); use publisher mqtt or auto"
        )
    return setting


def ipc_client_factory() -> Any:
    """A connected ``GreengrassCoreIPCClientV2`` (lazy import of the optional awsiotsdk)."""
    try:
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    except ImportError as err:
        raise ConfigError(f"Greengrass IPC unavailable ({err}): {INSTALL_HINT}") from None
    return GreengrassCoreIPCClientV2()


def _qos(qos: int) -> str:
    try:
        from awsiot.greengrasscoreipc.model import QOS

        return QOS.AT_LEAST_ONCE if qos >= 1 else QOS.AT_MOST_ONCE
    except ImportError:  # a stand-in client in tests; the SDK's QOS values are these strings
        return "1" if qos >= 1 else "0"


class GreengrassIpcPublisher(EventPublisher):
    """``EventPublisher`` over Greengrass IPC ``publish_to_iot_core`` (see the module docstring)."""

    owns_connection = False

    def __init__(
        self,
        *,
        client_factory: Callable[[], Any] = ipc_client_factory,
        connect_retry_s: float = 5.0,
        publish_timeout_s: float = 30.0,
    ) -> None:
        self._factory = client_factory
        self._retry_s = connect_retry_s
        self._timeout_s = publish_timeout_s
        self._client: Any = None
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._retain_supported = True
        self.on_connect: Callable[[], None] | None = None
        self.refused = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect now if the nucleus answers, else keep trying in the background."""
        if self._try_connect():
            return
        self._thread = threading.Thread(target=self._connect_loop, name="gg-ipc-connect", daemon=True)
        self._thread.start()

    def _try_connect(self) -> bool:
        try:
            client = self._factory()
        except ConfigError:
            raise
        except Exception as err:  # the nucleus not answering yet
            log.warning("greengrass.ipc_unavailable", error=repr(err), retry_in_s=self._retry_s)
            return False
        with self._lock:
            self._client = client
        self._connected.set()
        log.info("greengrass.ipc_connected")
        if self.on_connect:
            try:
                self.on_connect()
            except Exception as err:
                log.error("greengrass.on_connect_failed", error=repr(err))
        return True

    def _connect_loop(self) -> None:
        while not self._stopping.wait(self._retry_s):
            if self._try_connect():
                return

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        # the connect loop ends within one attempt: wait for it, so it neither installs a client after this
        # stop nor outlives its owner (and logs to a stream closed by then)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._lock:
            client, self._client = self._client, None
        self._connected.clear()
        if client is not None:
            try:
                client.close()
            except Exception as err:
                log.warning("greengrass.ipc_close_failed", error=repr(err))

    # -- publishing ---------------------------------------------------------------------------
    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, on_ack: AckCallback | None = None
    ) -> bool:
        with self._lock:
            client = self._client
        if client is None:
            return False
        kwargs: dict[str, Any] = {"topic_name": topic, "qos": _qos(qos), "payload": payload}
        if retain and self._retain_supported:
            kwargs["retain"] = True
        try:
            future = client.publish_to_iot_core_async(**kwargs)
        except TypeError:
            if "retain" not in kwargs:
                raise
            # an awsiotsdk without the retain field: publish plainly (status is still sent on start/stop)
            self._retain_supported = False
            log.warning("greengrass.retain_unsupported", hint="upgrade awsiotsdk for retained status messages")
            kwargs.pop("retain")
            future = client.publish_to_iot_core_async(**kwargs)
        except Exception as err:  # connection to the nucleus lost
            log.warning("greengrass.publish_failed", topic=topic, error=repr(err))
            self._lost(client)
            return False
        started = time.monotonic()

        def done(fut) -> None:
            try:
                fut.result(timeout=0)
            except Exception as err:
                self.refused += 1
                reason = f"{type(err).__name__}: {err}"
                log.warning("greengrass.publish_refused", topic=topic, reason=reason)
                if on_ack:
                    on_ack(False, reason)
                return
            if on_ack:
                on_ack(True)
            log.debug("greengrass.spooled", topic=topic, ms=round((time.monotonic() - started) * 1000, 1))

        future.add_done_callback(done)
        return True

    def _lost(self, client: Any) -> None:
        with self._lock:
            if self._client is not client:
                return
            self._client = None
        self._connected.clear()
        with contextlib.suppress(Exception):
            client.close()
        if not self._stopping.is_set() and (self._thread is None or not self._thread.is_alive()):
            self._thread = threading.Thread(target=self._connect_loop, name="gg-ipc-connect", daemon=True)
            self._thread.start()


def report_state(state: str, client_factory: Callable[[], Any] = ipc_client_factory) -> bool:
    """Tell the nucleus this component is ``RUNNING`` or ``ERRORED`` (IPC UpdateState). False if it cannot."""
    try:
        client = client_factory()
        try:
            client.update_state(state=state)
        finally:
            client.close()
        return True
    except Exception as err:
        log.warning("greengrass.update_state_failed", state=state, error=repr(err))
        return False
