"""`lookout demo`: the whole system, end to end, on one machine, in a couple of minutes.

1. the face models (fetched and verified once, then cached);
2. a signing key pair and a signed gallery bundle, built from the identity folders of
   ``../shared/data/faces-dev`` (or, without it, from the faces that ship in PyPI
   packages: matplotlib's Grace Hopper and scikit-image's astronaut, Eileen Collins);
3. the bundle published and served by an HTTP server on loopback;
4. a local MQTT broker (mosquitto on 127.0.0.1);
5. the relay with the console notifier (it would send SMS through SNS in production);
6. the device pulling and verifying the bundle, as a camera device does;
7. a test video: the group photos panned and zoomed, faceless frames, strangers;
8. the device on that video: detect, track, embed, search, decide, publish;
9. the SMS texts the relay would send, then a summary: frames, faces, matches,
   alerts, latencies, and whether the right people were found in the right photos.

Everything runs on 127.0.0.1 in a temporary folder that is removed at the end
(``--keep DIR`` keeps it). The same commands run each part in production; the demo
prints them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as paho
import yaml

from lookout.console.config import load_config as load_console_config
from lookout.device.config import load_config
from lookout.device.runtime import Runtime
from lookout.device.status import Metrics
from lookout.device.videomaker import make_scene_video
from lookout.errors import ConfigError, LookoutError
from lookout.face.options import add_model_dir
from lookout.model_store.catalog import DEFAULT_DETECTOR, DEFAULT_EMBEDDER
from lookout.model_store.store import ModelStore
from lookout.models.install import install
from lookout.mosquitto import LocalMosquitto, find_mosquitto
from lookout.topics import Topics

DEFAULT_FACES_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces-dev"
DEVICE_ID = "demo-cam-1"
# Where the demo's people and camera are: every gallery record and every device needs a jurisdiction (an unknown
# one is denied), and the built-in policy allows California.
DEMO_JURISDICTION = "US-CA"
DEMO_COOLDOWN_S = 4.0  # device cooldown, shortened so each photo of a short video reports its people (default 60)


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="the whole system end to end on built-in data: gallery, broker, relay, device, SMS texts",
        description="Builds a signed gallery, serves it on loopback, starts mosquitto and the relay, runs the "
        "device on a generated video and prints the SMS texts the relay would send, then a summary.",
    )
    demo.add_argument(
        "--faces-dev",
        type=Path,
        default=DEFAULT_FACES_DEV,
        help="faces-dev folder (default: ../shared/data/faces-dev; without it, built-in faces)",
    )
    demo.add_argument("--device", default="CPU", help="OpenVINO device for the camera device (default CPU)")
    demo.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep it (keys, bundle, video, logs)")
    demo.add_argument("--verbose", action="store_true", help="show every part's log lines")
    demo.add_argument(
        "--console",
        action="store_true",
        help="hold the alerts for human review, then serve the web console on the demo's data until Ctrl-C",
    )
    add_model_dir(demo)
    demo.set_defaults(func=_demo)


# -- output ------------------------------------------------------------------------------


class _Say:
    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def step(self, text: str) -> None:
        self.n += 1
        with self.lock:
            print(f"\n[{self.n}/{self.total}] {text}  (t={time.monotonic() - self.t0:.0f} s)", flush=True)

    def line(self, text: str) -> None:
        with self.lock:
            print(f"      {text}", flush=True)


def _lookout(args: list[str], what: str, log_dir: Path) -> str:
    """Run a `lookout` command as a user would; its output goes to a log file, a failure is shown."""
    cmd = [sys.executable, "-m", "lookout", "--log-level", "warning", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (log_dir / f"{args[0]}-{args[1] if len(args) > 1 else ''}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise LookoutError(f"{what} failed: {' '.join(cmd[2:])}\n{(proc.stderr or proc.stdout)[-2000:]}")
    return proc.stdout


def _pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(list(values), float), q)) if len(values) else float("nan")


# -- the scene -------------------------------------------------------------------------------


@dataclass
class Scene:
    video: Path
    fps: float
    segments: list  # objects with kind, source, start_s, end_s, identities
    people_dir: Path
    source_note: str


@dataclass
class _Segment:
    kind: str
    source: str
    start_s: float
    end_s: float
    identities: list[str] = field(default_factory=list)


def _faces_dev_scene(faces_dev: Path, work: Path) -> Scene:

    info = make_scene_video(work / "scene.mp4", faces_dev, fps=10.0, photo_s=3.0)
    return Scene(
        info.path,
        info.fps,
        info.segments,
        faces_dev,
        f"faces-dev at {faces_dev}: 8 people's identity folders; 5 group photos and 7 strangers in the video",
    )


def _builtin_scene(work: Path) -> Scene:
    """Without faces-dev: the two real faces shipped in PyPI packages, in a short video."""
    import matplotlib
    from skimage import data

    grace_path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    grace = cv2.imread(str(grace_path))
    if grace is None:
        raise ConfigError(f"{grace_path}: cannot read matplotlib's sample face")
    eileen = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    coffee = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    people = work / "people"
    for name, image, ext in (("grace_hopper", grace, "jpg"), ("eileen_collins", eileen, "png")):
        (people / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(people / name / f"1.{ext}"), image)
    fps, path = 10.0, work / "scene.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (1280, 720))
    segments, frame_no = [], 0

    def put(kind, source, who, frames, render):
        nonlocal frame_no
        start = frame_no / fps
        for i in range(frames):
            frame = np.full((720, 1280, 3), 40, np.uint8)
            render(frame, i)
            writer.write(frame)
            frame_no += 1
        segments.append(_Segment(kind, source, start, frame_no / fps, who))

    def grace_pan(frame, i):  # mirrored, panning
        frame[60:620, 120 + 6 * i : 600 + 6 * i] = cv2.resize(cv2.flip(grace, 1), (480, 560))

    def eileen_zoom(frame, i):  # zooming in
        side = 560 + 2 * i
        frame[40 : 40 + side, 640 : 640 + side] = cv2.resize(eileen, (side, side))

    def coffee_cup(frame, i):
        frame[120 : 120 + coffee.shape[0], 340 : 340 + coffee.shape[1]] = coffee

    put("group", "grace_hopper.jpg (mirrored)", ["grace_hopper"], 30, grace_pan)
    put("blank", "", [], 10, lambda f, i: None)
    put("group", "astronaut.png (zooming)", ["eileen_collins"], 30, eileen_zoom)
    put("blank", "", [], 10, lambda f, i: None)
    put("stranger", "coffee.png (no one)", [], 20, coffee_cup)
    writer.release()
    return Scene(
        path,
        fps,
        segments,
        people,
        "no faces-dev found: using Grace Hopper (matplotlib) and Eileen Collins (scikit-image's astronaut)",
    )


# -- loopback services ---------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(folder: Path, stack: contextlib.ExitStack) -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, name="demo-http", daemon=True).start()
    stack.callback(server.server_close)
    stack.callback(server.shutdown)
    return f"http://127.0.0.1:{server.server_address[1]}/"


class _RelayProcess:
    def __init__(self, config: Path, log_path: Path) -> None:
        self.log_path = log_path
        self.connected = threading.Event()
        self.alerts = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lookout", "--log-format", "json", "relay", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, name="demo-relay-log", daemon=True).start()

    def _read(self) -> None:
        with open(self.log_path, "w", encoding="utf-8") as log_file:
            for line in self.proc.stderr or ():
                log_file.write(line)
                log_file.flush()
                try:
                    event = json.loads(line).get("event")
                except (ValueError, AttributeError):
                    continue
                if event == "mqtt.connected":
                    self.connected.set()
                elif event == "alert.created":
                    self.alerts += 1

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _EventWatcher:
    """Subscribes like any match subscriber would; prints each match as it arrives."""

    def __init__(self, host: str, port: int, say: _Say, where) -> None:

        self.events: list[tuple[float, dict]] = []
        self.say = say
        self.where = where
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="lookout-demo-watch")
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.subscribe(Topics().match_filter(), qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        event = json.loads(msg.payload)
        self.events.append((time.time(), event))
        self.say.line(f"match event: {event['person_id']:<16} score {event['score']:.3f}  {self.where(event)}")

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# -- the demo ------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:

    say = _Say(9)
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        if args.keep:
            work = args.keep.resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(tempfile.mkdtemp(prefix="lookout-demo-"))
            stack.callback(shutil.rmtree, work, True)
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        print(
            f"Lookout demo: everything on 127.0.0.1, files in {work}" + ("" if args.keep else " (removed at the end)")
        )

        say.step("Face models: fetch (once), verify SHA-256, convert to OpenVINO IR")
        store = ModelStore(args.model_dir)
        for name in (DEFAULT_DETECTOR, DEFAULT_EMBEDDER):
            manifest = install(store, name)
            say.line(f"{name:<15} ready, digest {manifest.digest[:16]}…  ({store.folder(name)})")

        faces_dev = args.faces_dev
        scene = _faces_dev_scene(faces_dev, work) if (faces_dev / "groups.csv").is_file() else _builtin_scene(work)
        say.step("Signing keys and a signed gallery bundle")
        say.line(scene.source_note)
        keys = work / "keys"
        model_args = ["--model-dir", str(store.root)]
        _lookout(["keys", "generate", "--out", str(keys)], "making the signing keys", logs)
        say.line(f"$ lookout keys generate --out {keys}")
        out = _lookout(
            [
                "gallery",
                "build",
                str(scene.people_dir),
                "--key",
                str(keys / "bundle-signing.key.pem"),
                "--out",
                str(work / "bundle"),
                "--report",
                str(work / "report.json"),
                "--jurisdiction",
                DEMO_JURISDICTION,
                "--purpose",
                "missing-persons",
                "--no-progress",
                *model_args,
            ],
            "building the gallery",
            logs,
        )
        say.line(
            f"$ lookout gallery build {scene.people_dir} --jurisdiction {DEMO_JURISDICTION} --purpose missing-persons "
            "--key … "
            f"--out {work / 'bundle'}"
        )
        say.line(
            f"(the demo's people and camera are in {DEMO_JURISDICTION}: no jurisdiction, no recognition; "
            "the built-in policy denies US-IL)"
        )
        for text in out.strip().splitlines()[-2:]:
            say.line(f"  {text}")
        _lookout(
            ["gallery", "publish", str(work / "bundle"), "--to", str(work / "published")],
            "publishing the gallery",
            logs,
        )

        say.step("Serving the published bundle over HTTP on loopback")
        url = _serve(work / "published", stack)
        say.line(f"{url}  (in production: any static web server or an S3 bucket)")

        say.step("Local MQTT broker")
        if find_mosquitto() is None:
            raise ConfigError(
                "mosquitto is not installed: `./run demo` installs it (apt-get install mosquitto), "
                "or set LOOKOUT_MOSQUITTO to its path"
            )
        (work / "broker").mkdir(exist_ok=True)
        broker = LocalMosquitto(workdir=work / "broker")
        broker.start()
        stack.callback(broker.close)
        say.line(f"mosquitto on {broker.host}:{broker.port}  (in production: AWS IoT Core, or your broker with TLS)")

        say.step("The relay, with the console notifier standing in for SMS")
        sms_file = work / "sms.jsonl"
        relay_cfg = work / "relay.yaml"
        relay_cfg.write_text(
            yaml.safe_dump(
                {
                    "mqtt": {"host": broker.host, "port": broker.port, "client_id": "lookout-demo-relay"},
                    "store": {"path": str(work / "relay.sqlite")},
                    "directory": {"path": str(work / "bundle" / "gallery.sqlite")},
                    "galleries": {"default": {"purpose": "missing-persons", "review": bool(args.console)}},
                    "notifiers": {"sms": {"type": "console", "path": str(sms_file)}},
                    "recipients": [{"name": "duty-officer", "notifier": "sms", "address": "+15555550100"}],
                    "rate_limits": {
                        "per_recipient": {"count": 1000, "per_s": 3600},
                        "overall": {"count": 1000, "per_s": 3600},
                    },
                },
                sort_keys=False,
            )
        )
        relay = _RelayProcess(relay_cfg, logs / "relay.log")
        stack.callback(relay.stop)
        if not relay.connected.wait(30):
            raise LookoutError(f"the relay did not connect to the broker; see {logs / 'relay.log'}")
        say.line(f"$ lookout relay --config {relay_cfg}   (subscribed to dt/lookout/+/match, QoS 1)")

        say.step("The device pulls the bundle and checks its signature")
        bundles = work / "device-bundles"
        _lookout(
            [
                "sync",
                "pull",
                url,
                "--into",
                str(bundles),
                "--public-key",
                str(keys / "bundle-signing.pub.pem"),
                "--embedder",
                DEFAULT_EMBEDDER,
                *model_args,
            ],
            "pulling the bundle",
            logs,
        )
        say.line(f"$ lookout sync pull {url} --into {bundles} --public-key …  → verified and installed")

        say.step("A test video")
        say.line(f"{scene.video.name}: {scene.segments[-1].end_s:.0f} s at {scene.fps:g} fps, 1280x720")
        for s in scene.segments:
            if s.kind != "blank":
                who = ", ".join(s.identities) if s.identities else "nobody enrolled"
                say.line(f"  {s.start_s:5.1f}-{s.end_s:5.1f} s  {s.kind:<8} {s.source:<30} {who}")

        device_cfg = work / "device.yaml"
        device_cfg.write_text(
            yaml.safe_dump(
                {
                    "device_id": DEVICE_ID,
                    "device_name": "Demo camera",
                    "location": {"name": "Demo lobby", "jurisdiction": DEMO_JURISDICTION},
                    "source": {"url": str(scene.video), "realtime": False},
                    "clock": "video",
                    "models": {"model_dir": str(store.root), "device": args.device},
                    "gallery": {
                        "store_dir": str(bundles),
                        "public_key": str(keys / "bundle-signing.pub.pem"),
                        "pull": {"url": url, "interval_s": 300},
                    },
                    "events": {"cooldown_s": DEMO_COOLDOWN_S},
                    "mqtt": {"host": broker.host, "port": broker.port, "client_id": DEVICE_ID},
                    "outbox": {"path": str(work / "outbox.sqlite")},
                    "status": {"heartbeat_s": 5},
                },
                sort_keys=False,
            )
        )
        say.step("The device on the video: detect, track, embed, search, decide, publish")
        say.line(f"$ lookout run --config {device_cfg}   (location.jurisdiction: {DEMO_JURISDICTION})")
        say.line(
            f"(every frame, as fast as this machine goes; the device's per-person cooldown is {DEMO_COOLDOWN_S:g} s "
            "here so each photo reports its people, default 60 s; the relay turns sightings of one person "
            "within 60 s into one alert)"
        )
        run = _run_device(device_cfg, broker, say, scene)

        if args.console:
            say.step("The alerts wait for a person's review (nothing is sent before someone confirms)")
            texts: list[dict] = []
            code = _summary(run, texts, scene, say, waiting=relay.alerts)
            _serve_console(work, broker, scene.people_dir)
            return code
        say.step("The SMS texts the relay would send")
        texts = _wait_for_sms(sms_file, relay, timeout=30)
        for sms in texts:
            print(f"      --- to {sms['recipient']} {sms['address']}")
            for text in sms["text"].splitlines():
                print(f"      | {text}")
        code = _summary(run, texts, scene, say)
        print(
            "To review alerts like these with their evidence in the web console: ./run console (lookout demo --console)"
        )
        return code
    return 0


def _serve_console(work: Path, broker, people: Path) -> None:
    """The web console on the demo's relay store, gallery and broker, with one admin account, until Ctrl-C."""
    # the console's web stack (starlette, uvicorn, argon2) is the optional extra `console`: loaded for --console only
    from lookout.console.accounts import Accounts
    from lookout.console.server import ConsoleServer

    config_path = work / "console.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "listen": {"host": "127.0.0.1", "port": 0},
                "data_dir": "console-data",
                "relay_config": "relay.yaml",
                "galleries": {
                    "default": {
                        "published": "published",
                        "source": str(people),
                        "key": "keys/bundle-signing.key.pem",
                        "public_key": "keys/bundle-signing.pub.pem",
                        "report": "report.json",
                        "jurisdiction": DEMO_JURISDICTION,
                    }
                },
                "models": {"device": "CPU"},
                "mqtt": {"host": broker.host, "port": broker.port},
            },
            sort_keys=False,
        )
    )
    config = load_console_config(config_path)
    password = secrets.token_urlsafe(12)
    accounts = Accounts(config.database, config.sessions, config.login)
    accounts.add_user("demo", "admin", password, replace=True)
    accounts.close()
    server = ConsoleServer(config).start()
    if not server.wait_started():
        raise LookoutError("the console did not start")
    print("\n" + "=" * 78)
    print(f"Lookout console: open {server.url} in a browser and log in as  demo  /  {password}")
    print(f"  (config {config_path}; the device has stopped, so the fleet page shows it offline)")
    print("  Ctrl-C stops the console, the broker and the relay, and removes the demo's files unless --keep.")
    print("=" * 78, flush=True)
    stop = threading.Event()
    # Ctrl-C or SIGTERM: stop here and let the caller's cleanup stop the relay and the broker. SIGINT is set
    # explicitly: a shell that starts the demo in the background leaves it ignored.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()


@dataclass
class _DeviceRun:
    metrics: Metrics
    events: list  # (received wall time, event dict)
    anchor: float | None
    wall_s: float


def _run_device(config: Path, broker, say: _Say, scene: Scene) -> _DeviceRun:

    cfg = load_config(config)
    runtime = Runtime(cfg)

    def where(event: dict) -> str:
        anchor = getattr(runtime.clock, "_anchor", None)
        if anchor is None:
            return ""

        pts = datetime.fromisoformat(event["seen_at"].replace("Z", "+00:00")).timestamp() - anchor
        seg = _segment_at(scene, pts)
        return f"at {pts:5.1f} s" + (f" in {seg.source}" if seg else "")

    watcher = _EventWatcher(broker.host, broker.port, say, where)
    started = time.monotonic()
    try:
        runtime.run()
        time.sleep(0.5)  # the last acknowledgements
    finally:
        watcher.stop()
    return _DeviceRun(
        runtime.metrics, list(watcher.events), getattr(runtime.clock, "_anchor", None), time.monotonic() - started
    )


def _segment_at(scene: Scene, pts: float):
    for seg in scene.segments:
        if seg.start_s - 0.05 <= pts < seg.end_s + 0.05:
            return seg
    return None


def _wait_for_sms(path: Path, relay: _RelayProcess, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    texts: list[dict] = []
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if len(lines) != len(texts):
            texts = [json.loads(line) for line in lines]
            stable_since = time.monotonic()
        if texts and len(texts) >= relay.alerts and time.monotonic() - stable_since > 1.5:
            break
        time.sleep(0.2)
    return texts


def _summary(run: _DeviceRun, texts: list[dict], scene: Scene, say: _Say, waiting: int | None = None) -> int:
    """``waiting``: alerts held for review (--console) instead of texts sent."""

    m = run.metrics
    print("\n" + "=" * 78)
    print("Summary")
    print(
        f"  frames processed    {m.frames} in {run.wall_s:.1f} s ({m.frames / max(run.wall_s, 1e-6):.1f} fps on this "
        f"machine, {os.cpu_count()} cores)"
    )
    print(f"  faces detected      {m.faces}   embedded {m.embedded}")
    print(f"  match events        {len(run.events)}   (published QoS 1 from the durable outbox)")
    if waiting is None:
        print(f"  alerts (SMS texts)  {len(texts)}")
    else:
        print(f"  alerts for review   {waiting}   (no SMS before a person confirms)")
    if m.decision_latency:
        print(
            f"  frame → decision    p50 {_pct(m.decision_latency, 50):.0f} ms   p95 {_pct(m.decision_latency, 95):.0f} ms"
        )
    if m.publish_latency:
        print(
            f"  frame → broker ack  p50 {_pct(m.publish_latency, 50):.0f} ms   p95 {_pct(m.publish_latency, 95):.0f} ms"
        )
    relay_ms = []
    for sms in texts:
        person = (sms.get("alert") or {}).get("person_id") or (sms.get("alert") or {}).get("alert", {}).get("person_id")
        received = [t for t, e in run.events if e["person_id"] == person and t <= sms["at"]]
        if received:
            relay_ms.append((sms["at"] - max(received)) * 1000)
    if relay_ms:
        print(f"  event → SMS text    p50 {_pct(relay_ms, 50):.0f} ms   p95 {_pct(relay_ms, 95):.0f} ms  (relay)")

    # who was found where, against what the video holds
    found: dict[str, set[str]] = {}
    for _, event in run.events:
        if run.anchor is None:
            break
        pts = datetime.fromisoformat(event["seen_at"].replace("Z", "+00:00")).timestamp() - run.anchor
        seg = _segment_at(scene, pts)
        found.setdefault(seg.source if seg else "(between photos)", set()).add(event["person_id"])
    print(f"\n  {'photo':<28} {'in the photo (enrolled people)':<46} {'matched by the device':<46}")
    wrong = 0
    for seg in scene.segments:
        if seg.kind == "blank":
            continue
        got = found.pop(seg.source, set())
        expected = set(seg.identities)
        bad = got - expected
        wrong += len(bad)
        mark = "ok" if not bad else "WRONG: " + ", ".join(sorted(bad))
        missed = expected - got
        if missed and not bad:
            mark += f" (not decided: {', '.join(sorted(missed))})"
        print(f"  {seg.source:<28} {', '.join(sorted(expected)) or '-':<46} {', '.join(sorted(got)) or '-':<46} {mark}")
    for where, people in found.items():
        wrong += len(people)
        print(f"  {where:<28} {'-':<46} {', '.join(sorted(people)):<46} WRONG")
    expected_all = {p for s in scene.segments for p in s.identities}
    matched_all = {e["person_id"] for _, e in run.events}
    print(
        f"\n  people found: {len(matched_all & expected_all)} of {len(expected_all)} enrolled people in the video; "
        f"wrong matches: {wrong}; strangers matched: "
        f"{sum(1 for s in scene.segments if s.kind == 'stranger' and s.source in found)}"
    )
    print("=" * 78)
    if waiting is None:
        print("Done. Everything the demo started has been stopped.")
    return 0 if wrong == 0 else 1
