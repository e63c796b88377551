"""``lookout bench relay``: events/s and event-to-notifier latency, for each store and number of relays,
side by side in one run, beside the disk's own commit rate.

For each setup (store ``sqlite`` or ``postgresql``, 1 or more relays): a fresh local mosquitto, the
relays as separate processes (``lookout relay``, shared subscription) with a console notifier writing
JSON lines to a file each, rate limits off, and a publisher process acting as devices (QoS 1, a
distinct person per event, so every event is validated, stored, deduplicated and sent). PostgreSQL
is a throwaway cluster (``LocalPostgres``, fsync on) started once for the bench.

- flood: ``events`` published as fast as possible; events/s from the first publish to the last send;
- latency: ``rate`` events/s for ``seconds``, ``runs`` times; latency is the event's ``seen_at``
  (stamped at publish) to the notifier writing it, p50/p95/max;
- duplicates: alerts beyond one per person, counted in the notifiers' files (must be 0);
- the disk: raw fsyncs/s, SQLite ``synchronous=FULL`` commits/s, PostgreSQL commits/s, each from
  one writer on the bench's folder: what one event per commit could reach.

The load average is printed with every figure: other processes on the machine slow everything here.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

try:  # optional dependency (the PostgreSQL store); present whenever a PostgreSQL bench runs
    import psycopg
except ImportError:  # pragma: no cover
    psycopg = None  # type: ignore[assignment]

from lookout.mosquitto import LocalMosquitto, free_port
from lookout.mqtt import MqttSettings, connect, make_client
from lookout.relay.local_postgres import PASSWORD_ENV, LocalPostgres
from lookout.topics import Topics

STORES = ("sqlite", "postgresql")
EXTRA_STORES = ("sqlite-normal",)  # SQLite with synchronous=normal: beside "sqlite" it shows what fsync costs
_TEMPLATE = (
    '{{"schema_version":"1","event_id":"{eid}","device_id":"bench-{dev}","seen_at":"{seen}",'
    '"expires_at":"{seen}","person_id":"p-{n}","score":0.81,"margin":0.2,"track_length":7,'
    '"model":{{"name":"bench","digest":"' + "0" * 64 + '"}},"bundle_version":"b1","policy_version":"p1",'
    '"box":[10,20,110,140],"seq":{{"stream":"bench-{dev}","n":{seq}}}}}'
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
    load_before: float
    load_after: float
    relay_cpu_us_per_event: float = 0.0  # CPU time of the relay processes / events: hardly moved by load


@dataclass
class SetupFigures:
    store: str
    relays: int
    flood: RunFigures
    latency: list[RunFigures] = field(default_factory=list)
    duplicates: int = 0


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _publish(port: int, prefix: str, count: int, rate: float, offset: int) -> None:
    """Publisher process: ``count`` events at ``rate``/s (0 = as fast as possible), as four devices."""
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
        dev, n = i % 4, offset + i
        body = _TEMPLATE.format(eid=uuid.uuid4(), dev=dev, seen=_stamp(time.time()), n=n, seq=n // 4 + 1)
        last = client.publish(topics.match(f"bench-{dev}"), body.encode(), qos=1)
    if last is not None:
        last.wait_for_publish(timeout=120)
    client.disconnect()
    client.loop_stop()


# --- the disk ---------------------------------------------------------------------------------------


def commit_rates(folder: Path, pg: LocalPostgres | None, seconds: float = 2.0) -> dict[str, float]:
    """What one writer gets from this disk: raw fsyncs/s, SQLite FULL commits/s, PostgreSQL commits/s."""
    out = {"load": _load()}
    path = folder / "fsync.probe"
    with open(path, "wb") as f:
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            f.write(b"x" * 512)
            f.flush()
            os.fsync(f.fileno())
            n += 1
    out["fsync_per_s"] = round(n / seconds)
    db = sqlite3.connect(folder / "commit.probe.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (x INTEGER)")
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        db.execute("INSERT INTO t VALUES (?)", (n,))
        n += 1
    db.close()
    out["sqlite_commits_per_s"] = round(n / seconds)
    if pg is not None:
        out["postgresql_commits_per_s"] = round(_pg_commits(pg, seconds))
    return out


def _pg_commits(pg: LocalPostgres, seconds: float) -> float:
    with psycopg.connect(pg.dsn(), password=pg.password, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS commit_probe (x bigint)")
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            conn.execute("INSERT INTO commit_probe VALUES (%s)", (n,))
            n += 1
    return n / seconds


# --- one setup: a broker, N relay processes, one store ---------------------------------------------


class _Relays:
    """N ``lookout relay`` processes with console notifiers writing JSON lines to files."""

    def __init__(self, folder: Path, broker_port: int, store: dict, count: int, env: dict[str, str]) -> None:
        self.folder = folder
        self.outputs: list[Path] = []
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen] = []
        for i in range(count):
            sent, port = folder / f"sent-{i}.jsonl", free_port()
            config = folder / f"relay-{i}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "mqtt": {"port": broker_port, "client_id": f"bench-relay-{i}"},
                        "store": store,
                        "notifiers": {"file": {"type": "console", "path": str(sent)}},
                        "recipients": [{"name": "bench", "notifier": "file"}],
                        "rate_limits": {"per_recipient": None, "overall": None},
                        "metrics": {"port": port, "log_every_s": 3600},
                        # the bench's people are made up: no gallery directory, so no gate (one indexed
                        # SQLite lookup per event in production)
                        "policy": {"require_directory": False},
                    }
                )
            )
            self.outputs.append(sent)
            self.ports.append(port)
            with open(folder / f"relay-{i}.log", "ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "lookout", "--log-level", "warning", "relay", "--config", str(config)],
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                        env={**os.environ, **env},
                    )
                )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for port, proc in zip(self.ports, self.procs):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"a bench relay exited ({proc.returncode}); see {self.folder}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bench relays not ready within {timeout:g} s; see {self.folder}")
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the relay processes have used so far (Linux /proc; 0 elsewhere)."""
        total = 0.0
        for proc in self.procs:
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def sent(self) -> list[dict]:
        lines = []
        for path in self.outputs:
            if path.exists():
                lines += [doc for doc in map(_json_line, path.read_text().splitlines()) if doc is not None]
        return lines

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _json_line(line: str) -> dict | None:
    """One notifier line, or None for a line still being written."""
    try:
        return dict(json.loads(line))
    except ValueError:
        return None


def _person_number(line: dict) -> int:
    return int(line["alert"]["person_id"][2:])


def _run(relays: _Relays, port: int, count: int, rate: float, offset: int) -> RunFigures:
    load_before, cpu_before = _load(), relays.cpu_seconds()
    ctx = multiprocessing.get_context("spawn")
    publisher = ctx.Process(target=_publish, args=(port, Topics().prefix, count, rate, offset))
    publisher.start()
    deadline = time.monotonic() + 60 + (count / rate if rate else count / 200)
    mine: list[dict] = []
    while time.monotonic() < deadline:
        mine = [s for s in relays.sent() if offset <= _person_number(s) < offset + count]
        if len({_person_number(s) for s in mine}) >= count:
            break
        time.sleep(0.2)
    publisher.join(timeout=30)
    cpu = relays.cpu_seconds() - cpu_before
    seen = [datetime.fromisoformat(s["alert"]["event"]["seen_at"]).timestamp() for s in mine]
    lat = sorted(s["at"] - t for s, t in zip(mine, seen))
    span = max(max(s["at"] for s in mine) - min(seen), 1e-9) if mine else 0.0
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99
    return RunFigures(
        count,
        len(mine),
        round(span, 3),
        round(len(mine) / span, 1) if span else 0.0,
        round(q[49] * 1000, 1),
        round(q[94] * 1000, 1),
        round((lat[-1] if lat else 0) * 1000, 1),
        load_before,
        _load(),
        round(cpu / max(len(mine), 1) * 1e6, 1),
    )


@contextmanager
def _setup(folder: Path, store: dict, count: int, env: dict[str, str]) -> Iterator[tuple[_Relays, int]]:
    with LocalMosquitto(workdir=folder / "broker") as broker:
        relays = _Relays(folder, broker.port, store, count, env)
        try:
            relays.wait_ready()
            yield relays, broker.port
        finally:
            relays.stop()


def run_setup(
    folder: Path,
    store_name: str,
    store: dict,
    count: int,
    load: tuple[int, float, float, int],
    env: dict[str, str],
) -> SetupFigures:
    """``load``: (flood events, latency rate, seconds per latency run, latency runs)."""
    events, rate, seconds, runs = load
    folder.mkdir(parents=True)
    with _setup(folder, store, count, env) as (relays, port):
        flood = _run(relays, port, events, 0, 0)
        figures = SetupFigures(store_name, count, flood)
        offset = events
        for _ in range(runs):
            n = int(rate * seconds)
            figures.latency.append(_run(relays, port, n, rate, offset))
            offset += n
        people = [_person_number(s) for s in relays.sent()]
        figures.duplicates = len(people) - len(set(people))
    return figures


def run_bench(
    events: int = 5000,
    rate: float = 1000.0,
    seconds: float = 5.0,
    runs: int = 3,
    stores: tuple[str, ...] = STORES,
    relay_counts: tuple[int, ...] = (1, 2),
) -> dict:
    with tempfile.TemporaryDirectory(prefix="lookout-bench-relay-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        pg = stack.enter_context(LocalPostgres()) if "postgresql" in stores else None
        env = {PASSWORD_ENV: pg.password} if pg is not None else {}  # the relay processes read it from there
        disk = commit_rates(work, pg)
        results = []
        for store_name in stores:
            for count in relay_counts:
                name = f"{store_name}-{count}"
                if store_name == "postgresql" and pg is not None:
                    store = {
                        "type": "postgresql",
                        "dsn": pg.create_database(name.replace("-", "_")),
                        "password_env": PASSWORD_ENV,
                    }
                else:
                    store = {"type": "sqlite", "path": str(work / name / "relay.sqlite")}
                results.append(run_setup(work / name, store_name, store, count, (events, rate, seconds, runs), env))
    return {
        "machine": {"cpus": os.cpu_count()},
        "rate": rate,
        "disk": disk,
        "setups": [asdict(r) for r in results],
    }


def print_figures(figures: dict, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    disk = figures["disk"]
    pg = disk.get("postgresql_commits_per_s")
    print(f"relay bench on {figures['machine']['cpus']} CPUs; one event per commit would reach at most:")
    print(
        f"  disk: fsync {disk['fsync_per_s']:,}/s, SQLite synchronous=full commits {disk['sqlite_commits_per_s']:,}/s"
        + (f", PostgreSQL commits {pg:,}/s" if pg else "")
        + f"   (load {disk['load']})"
    )
    rate = figures["rate"]
    print(
        f"  {'store':13s} {'relays':>6s} {'flood events/s':>15s} {'cpu us/ev':>9s} {'dup':>4s}"
        f"   at {rate:,.0f} events/s, each run: p50 / p95 / max ms (load before)"
    )
    for s in figures["setups"]:
        f = s["flood"]
        runs = "; ".join(
            f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f} / {r['max_ms']:.0f} ({r['load_before']})"
            + ("" if r["delivered"] == r["events"] else f" [{r['delivered']}/{r['events']}]")
            for r in s["latency"]
        )
        lost = "" if f["delivered"] == f["events"] else f" [{f['delivered']}/{f['events']} delivered]"
        print(
            f"  {s['store']:13s} {s['relays']:>6d} {f['events_per_s']:>15,.0f} {f['relay_cpu_us_per_event']:>9,.0f}"
            f" {s['duplicates']:>4d}"
            f"   {runs}   (flood load {f['load_before']}-{f['load_after']}){lost}"
        )
