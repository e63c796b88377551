"""The Greengrass IPC publisher behind the durable outbox, and live configuration updates.

A stand-in for ``GreengrassCoreIPCClientV2`` plays the nucleus (the real one needs a
running nucleus): same method names and future-based results.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from lookout.device.config import DeviceConfig
from lookout.device.cooldown import Cooldown
from lookout.device.decision import Decider
from lookout.device.outbox import Outbox, OutboxSender
from lookout.device.runtime import Runtime
from lookout.errors import ConfigError
from lookout.greengrass.config_updates import ConfigurationWatcher, LiveSettings, apply_live
from lookout.greengrass.ipc_publisher import GreengrassIpcPublisher


class FakeNucleus:
    """publish_to_iot_core_async / get_configuration / subscribe_to_configuration_update / update_state."""

    def __init__(self) -> None:
        self.published: list[dict] = []
        self.refuse_next = 0
        self.config: dict = {}
        self.on_update = None
        self.closed = False

    def publish_to_iot_core_async(self, *, topic_name, qos, payload, retain=None):
        fut: Future = Future()
        if self.refuse_next:
            self.refuse_next -= 1
            threading.Timer(0.01, fut.set_exception, [RuntimeError("spooler full")]).start()
        else:
            self.published.append({"topic": topic_name, "qos": qos, "payload": payload, "retain": retain})
            threading.Timer(0.01, fut.set_result, [SimpleNamespace()]).start()
        return fut

    def get_configuration(self, *, key_path=None, component_name=None):
        return SimpleNamespace(component_name="com.lookout.Device", value=dict(self.config))

    def subscribe_to_configuration_update(
        self, *, key_path=None, on_stream_event=None, on_stream_error=None, on_stream_closed=None, component_name=None
    ):
        self.on_update = on_stream_event
        return SimpleNamespace(), SimpleNamespace(close=lambda: None)

    def update_state(self, *, state):
        self.state = state

    def close(self):
        self.closed = True


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_outbox_events_leave_through_ipc_and_refusals_are_retried(tmp_path):
    nucleus = FakeNucleus()
    publisher = GreengrassIpcPublisher(client_factory=lambda: nucleus)
    connects = []
    publisher.on_connect = lambda: connects.append(1)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    sender = OutboxSender(outbox, publisher, retry_s=0.2)
    publisher.start()
    assert publisher.connected and connects == [1] and publisher.owns_connection is False
    nucleus.refuse_next = 1  # the first publish is refused (e.g. the nucleus spooler is full)
    for i in range(3):
        outbox.add(f"e{i}", "dt/lookout/cam/match", b'{"n": %d}' % i, expires_at=time.time() + 300)
    sender.start()
    try:
        assert _wait(lambda: outbox.count() == 0), "events stay in the outbox until the nucleus accepts them"
        assert sorted(p["payload"] for p in nucleus.published) == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
        assert all(p["qos"] == "1" for p in nucleus.published)  # QOS.AT_LEAST_ONCE
        assert publisher.refused == 1
        acked = threading.Event()
        assert publisher.publish("dt/lookout/cam/status", b"{}", retain=True, on_ack=lambda ok, r="": acked.set())
        assert acked.wait(2) and nucleus.published[-1]["retain"] is True
    finally:
        sender.stop()
        publisher.stop()
        outbox.close()
    assert nucleus.closed and not publisher.connected
    assert publisher.publish("t", b"x") is False  # "not now": the outbox keeps the event


def test_publisher_retries_until_the_nucleus_answers():
    nucleus = FakeNucleus()
    attempts = []

    def factory():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("nucleus not up yet")
        return nucleus

    publisher = GreengrassIpcPublisher(client_factory=factory, connect_retry_s=0.05)
    publisher.start()
    assert publisher.wait_connected(3) and len(attempts) == 3
    publisher.stop()


def test_live_configuration_updates_apply_without_restart():
    cfg = DeviceConfig.model_validate({"device_id": "cam", "source": {"url": "0"}, "recognition": {"enabled": False}})
    runtime = Runtime(cfg)
    runtime.decider = Decider(min_margin=0.05, cooldown=Cooldown(60))  # as the running loop holds it
    nucleus = FakeNucleus()
    # a cloud deployment stores numbers as floats, and booleans may come back as strings
    nucleus.config = {"threshold": 0.0, "margin": 0.05, "cooldownSeconds": 60.0, "sendCrop": True, "logLevel": "info"}
    live = LiveSettings.from_config(nucleus.config)
    watcher = ConfigurationWatcher(nucleus, live, lambda s: apply_live(runtime, s))
    watcher.start()
    nucleus.config.update({"threshold": 0.93, "cooldownSeconds": 120.0, "sendCrop": "false"})
    nucleus.on_update(SimpleNamespace())
    assert runtime.cfg.recognition.threshold == 0.93
    assert runtime.cfg.events.cooldown_s == 120 and runtime.decider.cooldown.seconds == 120
    assert runtime.cfg.events.crop is False
    nucleus.config["margin"] = "lots"  # a bad value is refused; the device keeps its settings
    nucleus.on_update(SimpleNamespace())
    assert runtime.decider.min_margin == 0.05 and watcher.applied == 1
    with pytest.raises(ConfigError, match="threshold"):
        LiveSettings.from_config({"threshold": 3})
