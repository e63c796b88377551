"""Helpers for the relay tests (their fixtures, ``moto_sns``, ``aws_env`` and ``webhook``, are in conftest.py).

- ``MotoSns``: what a real ``moto_server`` on 127.0.0.1 received (boto3 makes real HTTP calls);
  ``.sms()`` reads it through moto's own API (``/moto-api/data.json``).
- ``WebhookServer``: a loopback ``http.server`` that records requests and answers
  with scripted statuses.
- ``make_event``, ``publish``, ``publish_event``, ``write_gallery``, ``write_config``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from lookout.events import MatchEvent
from lookout.gallery import metadata
from lookout.mqtt import MqttSettings, connect, make_client
from lookout.topics import Topics

DIGEST = "ab" * 32
# relay config for tests about delivery, not the relay's own check (tests/test_relay_gate.py): no directory
NO_GATE = {"require_directory": False}
PHONE = "+15555550123"


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


def publish(port: int, topic: str, payloads: list[bytes], qos: int = 1, retain: bool = False) -> None:
    """Publish as a device would (QoS 1) and wait for the broker's acknowledgements."""
    settings = MqttSettings(port=port)
    client = make_client(settings, client_id=f"test-device-{time.monotonic_ns()}")
    connect(client, settings, blocking=True)
    client.loop_start()
    try:
        infos = [client.publish(topic, p, qos=qos, retain=retain) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def publish_event(port: int, event: MatchEvent, prefix: str = "dt/lookout") -> None:
    publish(port, Topics(prefix).match(event.device_id), [event.to_json()])


def write_gallery(path: Path, persons: list[dict[str, Any]], withdrawn: tuple[str, ...] = ()) -> Path:
    """A ``gallery.sqlite`` as the gallery bundle ships it (written elsewhere, then renamed in); ``withdrawn``:
    person ids in its withdrawal ledger (``lookout.gallery.metadata``)."""
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
    metadata.change_withdrawn(
        db, [["person", p, "removed by an operator", "2026-12-01T05:00:00Z"] for p in withdrawn], []
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
        "policy": NO_GATE,
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
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
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
