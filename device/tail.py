"""`lookout events tail`: the simplest subscriber. Prints match and status events as they arrive.

Human-readable by default, one JSON object per line with ``--json``::

    {"topic": "dt/lookout/cam-1/match", "kind": "match", "payload": {...the event...}}

Invalid messages are reported on stderr with the reason, and skipped.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timezone

from lookout.errors import InputError
from lookout.events import parse_match_event, read_json_object
from lookout.mqtt import MqttSettings, connect, make_client
from lookout.topics import Topics


def _clock(ts: datetime) -> str:
    return ts.astimezone().strftime("%H:%M:%S")


def format_match(event) -> str:
    stale = "  STALE (delivered after expiry)" if event.is_stale() else ""
    crop = "  crop" if event.crop_jpeg_b64 else ""
    where = f" @ {event.location.name}" if event.location and event.location.name else ""
    return (
        f"{_clock(event.seen_at)}  MATCH   {event.device_id}{where}  {event.person_id}  "
        f"score {event.score:.3f}  margin {event.margin:.3f}  track {event.track_length}  "
        f"bundle {event.bundle_version}  event {event.event_id}{crop}{stale}"
    )


def format_status(doc: dict) -> str:
    extra = ", ".join(f"{k} {doc[k]}" for k in ("version", "bundle_version") if doc.get(k))
    return f"{_clock(datetime.now(timezone.utc))}  STATUS  {doc.get('device_id')}  {doc.get('state')}" + (
        f" ({extra})" if extra else ""
    )


def format_heartbeat(doc: dict) -> str:
    stages = " ".join(f"{k}={v}" for k, v in (doc.get("stage_ms") or {}).items())
    return (
        f"{_clock(datetime.now(timezone.utc))}  HEART   {doc.get('device_id')}  fps {doc.get('fps')}  "
        f"outbox {doc.get('queue_depth')}  bundle {doc.get('bundle_version')}  {stages}"
    )


def tail(
    settings: MqttSettings,
    *,
    prefix: str,
    device: str | None = None,
    as_json: bool = False,
    heartbeats: bool = False,
    count: int = 0,
    timeout: float = 0.0,
    out=None,
) -> int:
    """Subscribe and print until interrupted, ``count`` match events, or ``timeout`` seconds. Returns the match count."""
    out = out or sys.stdout
    topics = Topics(prefix)
    dev = device or "+"
    subs = [topics.match_filter(dev), topics.status_filter(dev)] + (
        [topics.heartbeat_filter(dev)] if heartbeats else []
    )
    done = threading.Event()
    seen = {"matches": 0}

    def on_connect(client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in subs])

    def on_message(client, userdata, msg):
        if done.is_set():  # --count reached: what arrives before the disconnect is not printed
            return
        kind = msg.topic.rsplit("/", 1)[-1]
        if topics.device_of(msg.topic) is None:
            return
        try:
            if kind == "match":
                event = parse_match_event(msg.payload, f"message on {msg.topic}")
                line = (
                    json.dumps({"topic": msg.topic, "kind": kind, "payload": json.loads(msg.payload)})
                    if as_json
                    else format_match(event)
                )
                seen["matches"] += 1
            else:
                doc = read_json_object(msg.payload, f"message on {msg.topic}")
                line = (
                    json.dumps({"topic": msg.topic, "kind": kind, "payload": doc})
                    if as_json
                    else (format_status(doc) if kind == "status" else format_heartbeat(doc))
                )
        except (InputError, ValueError) as err:  # unreadable JSON is an InputError (read_json_object)
            print(f"lookout: skipped invalid message: {err}", file=sys.stderr, flush=True)
            return
        print(line, file=out, flush=True)
        if count and seen["matches"] >= count:
            done.set()

    warned: list[bool] = []

    def on_connect_fail(client, userdata):
        if not warned:
            warned.append(True)
            print(
                f"lookout: cannot reach the broker at {settings.host}:{settings.port}; retrying",
                file=sys.stderr,
                flush=True,
            )

    client = make_client(settings, client_id=settings.client_id or "")
    client.on_connect_fail = on_connect_fail
    client.on_connect = on_connect
    client.on_message = on_message
    connect(client, settings, blocking=False)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout if timeout else None
        while not done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            done.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    return seen["matches"]
