"""``lookout bench relay``: sustained events/s and event-to-notifier latency on this machine.

A local mosquitto, the relay in this process with a console notifier writing to
/dev/null, and a publisher in a separate process acting as devices (QoS 1, a
distinct person per event so every event becomes an alert). Two runs:

- throughput: ``events`` published as fast as possible; events/s from the first
  publish to the last notifier send;
- latency: ``rate`` events/s for ``seconds``; latency is the event's ``seen_at``
  (stamped at publish) to the moment the notifier is called, p50/p95/max.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from lookout.mosquitto import LocalMosquitto
from lookout.mqtt import MqttSettings, connect, make_client
from lookout.relay.config import RelayConfig, load_config
from lookout.relay.message import Outgoing
from lookout.relay.notifiers.console import ConsoleNotifier
from lookout.relay.service import RelayService
from lookout.topics import Topics

_TEMPLATE = (
    '{{"schema_version":"1","event_id":"{eid}","device_id":"bench-{dev}","seen_at":"{seen}",'
    '"expires_at":"{seen}","person_id":"p-{n}","score":0.81,"margin":0.2,"track_length":7,'
    '"model":{{"name":"bench","digest":"' + "0" * 64 + '"}},"bundle_version":"b1","policy_version":"p1",'
    '"box":[10,20,110,140]}}'
)


@dataclass
class RunFigures:
    events: int
    delivered: int
    seconds: float
    events_per_s: float
    p50_ms: float
    p95_ms: float
    max_ms: float


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _publish(port: int, prefix: str, count: int, rate: float, offset: int) -> None:
    """Publisher process: ``count`` events at ``rate``/s (0 = as fast as possible)."""
    client = make_client(MqttSettings(port=port), client_id=f"bench-pub-{offset}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connect(client, MqttSettings(port=port), blocking=True)
    client.loop_start()
    topics = Topics(prefix)
    start = time.perf_counter()
    last = None
    for i in range(count):
        if rate > 0:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        dev = i % 4
        body = _TEMPLATE.format(eid=uuid.uuid4(), dev=dev, seen=_stamp(time.time()), n=offset + i)
        last = client.publish(topics.match(f"bench-{dev}"), body.encode(), qos=1)
    if last is not None:
        last.wait_for_publish(timeout=60)
    client.disconnect()
    client.loop_stop()


class _Probe:
    """Collects notifier-side times for each delivered event."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.first_seen = float("inf")
        self.last_sent = 0.0
        self.lock = threading.Lock()

    def __call__(self, message: Outgoing) -> None:
        now = time.time()
        seen = datetime.fromisoformat(message.document["event"]["seen_at"]).timestamp()
        with self.lock:
            self.latencies.append(now - seen)
            self.first_seen = min(self.first_seen, seen)
            self.last_sent = now

    def reset(self) -> None:
        with self.lock:
            self.latencies, self.first_seen, self.last_sent = [], float("inf"), 0.0


def _config(workdir: Path, port: int, synchronous: str) -> RelayConfig:
    return load_config(
        None,
        {
            "LOOKOUT_RELAY__MQTT__PORT": str(port),
            "LOOKOUT_RELAY__STORE__PATH": str(workdir / "relay.sqlite"),
            "LOOKOUT_RELAY__STORE__SYNCHRONOUS": synchronous,
            "LOOKOUT_RELAY__RATE_LIMITS__PER_RECIPIENT": "null",
            "LOOKOUT_RELAY__RATE_LIMITS__OVERALL": "null",
            "LOOKOUT_RELAY__METRICS__LOG_EVERY_S": "3600",
        },
    )


def _run(service, probe: _Probe, port: int, count: int, rate: float, offset: int) -> RunFigures:
    probe.reset()
    before = service.counters.snapshot()["sent"]
    ctx = multiprocessing.get_context("spawn")
    publisher = ctx.Process(target=_publish, args=(port, service.config.topics.prefix, count, rate, offset))
    started = time.time()
    publisher.start()
    deadline = time.monotonic() + 30 + (count / rate if rate else count / 200)
    while service.counters.snapshot()["sent"] - before < count and time.monotonic() < deadline:
        time.sleep(0.01)
    publisher.join(timeout=10)
    lat = sorted(probe.latencies)
    delivered = len(lat)
    # from the first event's publish (seen_at) to the last send; the publisher's start-up is not counted
    span = max(probe.last_sent - probe.first_seen, 1e-9) if lat else time.time() - started
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99
    return RunFigures(
        count,
        delivered,
        round(span, 3),
        round(delivered / span, 1),
        round(q[49] * 1000, 2),
        round(q[94] * 1000, 2),
        round((lat[-1] if lat else 0) * 1000, 2),
    )


def run_bench(events: int = 5000, rate: float = 1000.0, seconds: float = 5.0, synchronous: str = "full") -> dict:

    with (
        tempfile.TemporaryDirectory(prefix="lookout-bench-relay-") as tmp,
        LocalMosquitto() as broker,
        open(os.devnull, "w") as sink,
    ):
        workdir = Path(tmp)
        config = _config(workdir, broker.port, synchronous)
        probe = _Probe()
        notifier = ConsoleNotifier("console", stream=sink)
        service = RelayService(config, notifiers={"console": notifier}, on_sent=probe).start()
        try:
            if not service.connected.wait(5):
                raise RuntimeError("relay did not connect to the local broker")
            throughput = _run(service, probe, broker.port, events, 0, 0)
            latency = _run(service, probe, broker.port, int(rate * seconds), rate, events)
        finally:
            service.stop()
    return {
        "machine": {"cpus": os.cpu_count(), "store_synchronous": synchronous},
        "throughput": asdict(throughput),
        "latency": {"rate_per_s": rate, **asdict(latency)},
    }


def print_figures(figures: dict, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    t, lat = figures["throughput"], figures["latency"]
    print(
        f"relay bench on {figures['machine']['cpus']} CPUs, store synchronous={figures['machine']['store_synchronous']}"
    )
    print(
        f"  throughput: {t['delivered']}/{t['events']} events delivered in {t['seconds']} s = {t['events_per_s']} events/s"
        f" (latency under flood p50 {t['p50_ms']} ms, p95 {t['p95_ms']} ms)"
    )
    print(
        f"  latency at {lat['rate_per_s']:.0f} events/s: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms,"
        f" max {lat['max_ms']} ms ({lat['delivered']}/{lat['events']} delivered, {lat['events_per_s']} events/s)"
    )
