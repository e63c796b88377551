"""Helpers shared by the tests (not fixtures: those are in conftest.py).

- where things are: ``PROJECT_ROOT``, ``SHARED_DIR``, ``FACES_DEV``, ``STRANGERS``; where the test galleries'
  people and devices are: ``TEST_JURISDICTION``;
- ``wait_for``: poll a condition with a bounded timeout (never a fixed sleep before an assert);
- ``Subscriber``: THE test MQTT subscriber. It returns only once the broker has acknowledged the
  subscription (SUBACK), so nothing published after it is missed; ``barrier()`` proves that
  everything the broker had queued for it before has arrived (for asserting that nothing more came);
- ``OutputReader``: a subprocess's output, read as it comes, for waiting on a log line;
- ``hostile_bundle``: a bundle signed with people the product's policy denies (US-IL), as a hostile builder makes it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import paho.mqtt.client as paho
import pytest

from lookout.digest import sha256_file
from lookout.events import MatchEvent, parse_match_event
from lookout.gallery.keys import write_signed_manifest
from lookout.gallery.policy import Policy
from lookout.mqtt import MqttSettings, connect, connect_properties, make_client
from lookout.sync.build import build_gallery

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("LOOKOUT_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
FACES_DEV = SHARED_DIR / "data" / "faces-dev"
STRANGERS = ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")
# Where the test galleries' people and the test devices are. Every gallery record and every device needs a
# jurisdiction (an unknown one is denied: fail closed); the built-in policy allows this one. Tests take it from
# the `jurisdiction` fixture (conftest) and pass it where a gallery is built (`jurisdiction=`, `--jurisdiction`)
# or a device configured (`location.jurisdiction`).
TEST_JURISDICTION = "US-CA"

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, what: str = "", interval: float = 0.02) -> T:
    """Poll until ``predicate()`` is truthy and return it; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:g} s waiting for {what or getattr(predicate, '__name__', predicate)}"
            )
        time.sleep(interval)


class Subscriber:
    """Collects every message on ``topic`` (default: every Lookout topic) from a broker on loopback.

    ``persistent``: a session that outlives the connection (queued QoS 1 messages survive a restart).
    """

    def __init__(
        self, port: int, topic: str = "dt/lookout/#", *, persistent: bool = False, host: str = "127.0.0.1"
    ) -> None:
        self.topic = topic
        self.messages: list[tuple[str, bytes, bool]] = []  # (topic, payload, retained)
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.settings = MqttSettings(
            host=host, port=port, clean_start=not persistent, session_expiry=3600 if persistent else 0
        )
        self.client = make_client(self.settings, client_id=f"test-sub-{uuid.uuid4().hex[:12]}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        connect(self.client, self.settings, blocking=True)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            pytest.fail(f"could not subscribe to {topic} on 127.0.0.1:{port} (no SUBACK in 10 s)")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    # -- reading ----------------------------------------------------------------------------------
    def payloads(self, topic_suffix: str = "") -> list[bytes]:
        with self._cond:
            return [p for t, p, _ in self.messages if t.endswith(topic_suffix)]

    def kind(self, kind: str) -> list[bytes]:
        """Payloads of one kind of Lookout message: ``match``, ``status``, ``heartbeat``."""
        return self.payloads("/" + kind)

    def matches(self) -> list[MatchEvent]:
        return [parse_match_event(p) for p in self.kind("match")]

    def json(self, topic_suffix: str = "") -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.payloads(topic_suffix)]

    def wait_for(
        self,
        predicate: Callable[[list[tuple[str, bytes, bool]]], T],
        timeout: float = 15.0,
        context: Callable[[], str] = str,
    ) -> T:
        """Wait until ``predicate(messages)`` is truthy (checked on every message) and return it; fail the
        test otherwise, with ``context()`` (e.g. the device's log) in the message."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := predicate(list(self.messages))):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(
                        f"timed out after {timeout:g} s; {len(self.messages)} messages on {self.topic}\n{context()}"
                    )
                self._cond.wait(left)
            return value

    def first(
        self, predicate: Callable[[str, Any], bool], timeout: float = 15.0, context: Callable[[], str] = str
    ) -> tuple[str, Any]:
        """The first (topic, JSON document) for which ``predicate(topic, doc)`` holds, waiting for it."""

        def find(messages: list[tuple[str, bytes, bool]]) -> tuple[str, Any] | None:
            docs = ((t, json.loads(p)) for t, p, _ in messages)
            return next(((t, d) for t, d in docs if predicate(t, d)), None)

        return self.wait_for(find, timeout, context)

    def barrier(self, timeout: float = 10.0) -> None:
        """Publish a marker and wait for it: whatever the broker had queued for us before has arrived."""
        marker = f"dt/lookout/test-barrier-{uuid.uuid4().hex[:8]}/sync"
        client = make_client(self.settings, client_id=f"test-barrier-{uuid.uuid4().hex[:12]}")
        connect(client, MqttSettings(host=self.settings.host, port=self.settings.port), blocking=True)
        client.loop_start()
        try:
            client.publish(marker, b"{}", qos=1).wait_for_publish(timeout)
            self.wait_for(lambda msgs: any(t == marker for t, _, _ in msgs), timeout)
        finally:
            client.disconnect()
            client.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_session_properties(seconds: int) -> Any:
    """CONNECT properties asking the broker to keep the session ``seconds`` after a disconnect."""
    return connect_properties(MqttSettings(session_expiry=seconds))


class OutputReader:
    """Reads a subprocess's stdout and stderr in threads, so a test can wait on a line as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))
            if stream is not None
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self.lines[name].append(line)

    def text(self, name: str = "stderr") -> str:
        with self._lock:
            return "".join(self.lines[name])

    def count(self, needle: str, name: str = "stderr") -> int:
        return self.text(name).count(needle)

    def finish(self, timeout: float = 30.0) -> tuple[str, str]:
        """Wait for the process to end and its output to be read; (stdout, stderr)."""
        self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)
        return self.text("stdout"), self.text("stderr")


def hostile_bundle(
    records: list[Any],
    out: Path,
    private_key: Path,
    pipeline: Any,
    policy_doc: dict | None = None,
    default: str | None = TEST_JURISDICTION,
    **build_kwargs: Any,
) -> Path:
    """A signed bundle as a hostile or careless builder's own code would make it: the records' people with the
    jurisdictions they give (US-IL, say; ``default`` for those that give none), sealed under ``policy_doc`` (default: allow everything), bypassing the
    product's builder, which can no longer make one (the built-in denials are a floor no policy file lifts).

    Built by the product with every person placed in US-CA, then gallery.sqlite's jurisdictions and policy.json
    rewritten and the manifest signed again with ``private_key``, as anyone holding the key could."""
    out = Path(out)
    real = {r.person_id: r.jurisdiction or default for r in records}
    placed = [r.model_copy(update={"jurisdiction": "US-CA"}) for r in records]
    build_gallery(placed, out, private_key, pipeline, Policy.from_dict({"version": "placeholder"}), progress=False,
                  **build_kwargs)  # fmt: skip
    conn = sqlite3.connect(out / "gallery.sqlite")
    with conn:
        conn.executemany("UPDATE persons SET jurisdiction = ? WHERE person_id = ?", [(j, p) for p, j in real.items()])
        found = [r[0] or "" for r in conn.execute("SELECT DISTINCT jurisdiction FROM persons ORDER BY 1")]
    conn.close()
    doc = policy_doc or {"version": "allow-all", "default": "allow", "unknown_jurisdiction": "allow", "rules": []}
    (out / "policy.json").write_bytes(json.dumps(doc, sort_keys=True, indent=1).encode())
    manifest = json.loads((out / "manifest.json").read_bytes())
    for name in ("gallery.sqlite", "policy.json"):
        manifest["files"][name] = {"sha256": sha256_file(out / name), "size": (out / name).stat().st_size}
    manifest["policy"] = {"version": doc["version"], "sha256": manifest["files"]["policy.json"]["sha256"]}
    manifest["jurisdictions"] = found
    write_signed_manifest(out, json.dumps(manifest, sort_keys=True, indent=1).encode() + b"\n", private_key)
    return out
