"""The relay process is killed (SIGKILL) with undelivered alerts; restarted, it delivers each exactly once.

Also covers events published while the relay is down: its persistent MQTT session
makes the broker keep them until it is back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lookout.relay.sqlite_store import SqliteStore
from tests.helpers import wait_for
from tests.relay_helpers import make_event, publish_event, write_config

pytestmark = [pytest.mark.broker, pytest.mark.slow]


class RelayProcess:
    """``python -m lookout relay --config FILE`` as a real subprocess, its log lines collected."""

    def __init__(self, config: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lookout", "--log-format", "json", "relay", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=config.parent,
        )
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stderr:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                self.lines.append({"event": "raw", "text": raw.decode(errors="replace")})

    def saw(self, event: str) -> bool:
        return any(line.get("event") == event for line in self.lines)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


def test_killed_relay_delivers_pending_alerts_once_after_restart(tmp_path, mosquitto, webhook):
    webhook.answer(500)  # the receiver is down: alerts stay pending
    config = write_config(
        tmp_path / "relay.yaml",
        mosquitto.port,
        notifiers={"hook": {"type": "webhook", "url": webhook.url}},
        recipients=[{"name": "ops", "notifier": "hook"}],
        retry={"initial_s": 0.1, "max_s": 0.2},
    )
    first = RelayProcess(config)
    try:
        wait_for(lambda: first.saw("mqtt.connected"), timeout=10)
        publish_event(mosquitto.port, make_event(person_id="p-1"))
        wait_for(lambda: len(webhook.requests) >= 2, timeout=5)  # tried, failed, retried
    finally:
        first.kill()
    assert webhook.ok() == []

    down = make_event(person_id="p-2", device_id="cam-2")
    publish_event(mosquitto.port, down)  # while the relay is down: the broker keeps it for the session

    webhook.answer(200)
    second = RelayProcess(config)
    try:
        wait_for(lambda: len(webhook.ok()) >= 2, timeout=10)
    finally:  # a graceful stop; below, every delivery must be 'sent' once: none left to repeat
        assert second.terminate() == 0
    delivered = [json.loads(r["body"]) for r in webhook.ok()]
    assert sorted(d["person_id"] for d in delivered) == ["p-1", "p-2"]
    assert len({r["headers"]["X-Lookout-Delivery"] for r in webhook.ok()}) == 2
    store = SqliteStore(tmp_path / "relay.sqlite")
    try:
        assert [a.person_id for a in store.alerts(None, 10)] == ["p-2", "p-1"]
        assert {d.status for a in (1, 2) for d in store.deliveries_of(a)} == {"sent"}
    finally:
        store.close()
    assert second.saw("relay.stopped")
