"""Shared helpers and fixtures for the relay tests (import them explicitly), plus their self-tests.

- ``moto_sns``: a real ``moto_server`` on 127.0.0.1 (boto3 makes real HTTP calls);
  ``.sms()`` reads what SNS received through moto's own API (``/moto-api/data.json``).
- ``WebhookServer``: a loopback ``http.server`` that records requests and answers
  with scripted statuses.
- ``make_event``, ``publish``, ``write_gallery``, ``write_config``, ``wait_for``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from lookout.events import MatchEvent
from lookout.mosquitto import free_port, wait_for_port
from lookout.mqtt import MqttSettings, connect, make_client
from lookout.topics import Topics

DIGEST = "ab" * 32
PHONE = "+15555550123"


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll until ``predicate()`` is truthy; return it, or fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


def make_event(**fields: Any) -> MatchEvent:
    base = dict(
        device_id="cam-1",
        person_id="p-001",
        score=0.83,
        margin=0.21,
        track_length=9,
        model={"name": "facenet-512", "digest": DIGEST},
        bundle_version="2025.01.1",
        policy_version="pol-3",
        box=[100, 80, 220, 230],
        device_name="Front door",
        location={"name": "Main St 1", "lat": 52.37, "lon": 4.89},
    )
    base.update(fields)
    return MatchEvent.create(**base)


def publish(port: int, topic: str, payloads: list[bytes], qos: int = 1) -> None:
    """Publish as a device would (QoS 1) and wait for the broker's acknowledgements."""
    settings = MqttSettings(port=port)
    client = make_client(settings, client_id=f"test-device-{time.monotonic_ns()}")
    connect(client, settings, blocking=True)
    client.loop_start()
    try:
        infos = [client.publish(topic, p, qos=qos) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def publish_event(port: int, event: MatchEvent, prefix: str = "dt/lookout") -> None:
    publish(port, Topics(prefix).match(event.device_id), [event.to_json()])


class Subscriber:
    """Collects messages on a topic filter (e.g. the dead-letter topic)."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        settings = MqttSettings(port=port)
        self.client = make_client(settings, client_id=f"test-sub-{time.monotonic_ns()}")
        ready = threading.Event()
        self.client.on_connect = lambda c, *a: (c.subscribe(topic, qos=1), None)[1]
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        connect(self.client, settings, blocking=True)
        self.client.loop_start()
        assert ready.wait(5), f"could not subscribe to {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_gallery(path: Path, persons: list[dict[str, Any]]) -> Path:
    """A ``gallery.sqlite`` as the gallery bundle ships it (written elsewhere, then renamed in)."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    db.execute(
        "CREATE TABLE persons(person_id TEXT PRIMARY KEY, name TEXT NOT NULL, jurisdiction TEXT,"
        " department TEXT, attributes TEXT)"
    )
    for p in persons:
        db.execute(
            "INSERT INTO persons VALUES (?,?,?,?,?)",
            (
                p["person_id"],
                p["name"],
                p.get("jurisdiction"),
                p.get("department"),
                json.dumps(p.get("attributes", {})),
            ),
        )
    db.commit()
    db.close()
    os.replace(tmp, path)
    return path


def write_config(path: Path, broker_port: int, **sections: Any) -> Path:
    doc: dict[str, Any] = {
        "mqtt": {"port": broker_port, "client_id": f"relay-{path.parent.name}"[:60], "connect_timeout": 5},
        "store": {"path": str(path.parent / "relay.sqlite")},
        "retry": {"initial_s": 0.05, "max_s": 0.2},
        "metrics": {"log_every_s": 3600},
    }
    doc.update(sections)
    path.write_text(yaml.safe_dump(doc))
    return path


# --- moto --------------------------------------------------------------------------------------


class MotoSns:
    def __init__(self, url: str) -> None:
        self.url = url

    def sms(self) -> list[dict[str, str]]:
        """SMS messages SNS 'sent', from moto's model data."""
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=5) as r:
            return json.load(r).get("sns", {}).get("SMS", [])

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=5).close()


@pytest.fixture(scope="module")
def moto_sns() -> Iterator[MotoSns]:
    binary = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not os.access(binary, os.X_OK):
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if not wait_for_port("127.0.0.1", port, 20):
            pytest.fail("moto_server did not start within 20 s")
        yield MotoSns(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def aws_env(monkeypatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)


# --- webhook receiver ---------------------------------------------------------------------------


class WebhookServer:
    """Loopback HTTP server: answers with ``statuses`` in turn (then the last one), records requests."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [200])
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                    outer.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "status": status}
                    )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                reply = json.dumps({"sid": f"SM{len(outer.requests):032d}"}).encode()
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, *statuses: int) -> None:
        with self.lock:
            self.statuses = list(statuses)

    def ok(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["status"] == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()


# --- self-tests ---------------------------------------------------------------------------------


def test_webhook_server_scripts_statuses(webhook):
    webhook.answer(500, 200)
    codes = []
    for _ in range(3):
        try:
            with urllib.request.urlopen(urllib.request.Request(webhook.url, data=b"{}", method="POST")) as r:
                codes.append(r.status)
        except urllib.error.HTTPError as err:
            codes.append(err.code)
    assert codes == [500, 200, 200]


def test_write_gallery_replaces_atomically(tmp_path):
    path = write_gallery(tmp_path / "gallery.sqlite", [{"person_id": "a", "name": "A"}])
    write_gallery(path, [{"person_id": "b", "name": "B"}])
    rows = sqlite3.connect(path).execute("SELECT person_id FROM persons").fetchall()
    assert rows == [("b",)]
