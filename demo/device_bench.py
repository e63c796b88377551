"""`lookout bench device`: the whole device loop on a 1280x720 video of 3-6 faces per frame.

With ``--source file`` (default), three runs of the real runtime (real models, real gallery
bundle, real mosquitto on loopback when installed, else an in-memory broker stand-in that
acknowledges at once):

1. sustained, tracked: frames as fast as the loop takes them, faces embedded as the
   tracker decides (the normal mode);
2. sustained, all faces: every face embedded in every frame;
3. camera rate: the video played in real time at its own fps (frames dropped if the
   loop falls behind), tracked; frame-to-publish latency = from the frame being
   grabbed to the broker's PUBACK of the event it produced, and per-frame latency
   (grabbed -> decided) over every frame.

With ``--source rtsp`` the same video is served live by a real RTSP camera on loopback
(GStreamer's RTSP server, H.264 encoded as it plays, lookout.rtsp_server) and the device
reads it as it reads a camera. Every frame carries the time the camera "captured" it, so
the latencies are **camera to event**: capture, encoding, RTSP, decoding, the loop, the
outbox and the broker's PUBACK; the transport alone (capture to decoded frame) is printed too.

Then the device's resident memory: ``lookout run`` as a process of its own with a gallery of
25,000 photos (faces-dev's people plus synthetic ones, demo.scale_gallery), at camera rate,
its RSS sampled (steady and peak).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from lookout.demo.scale_gallery import NAMUS_PHOTOS, pad_gallery
from lookout.device.config import DeviceConfig
from lookout.device.publisher import MemoryPublisher
from lookout.device.runtime import Runtime
from lookout.device.sources import CaptureSource
from lookout.device.videomaker import make_scene_video
from lookout.face.options import add_model_dir
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.gallery.keys import PRIVATE_NAME, generate_keys
from lookout.log import get_logger
from lookout.mosquitto import LocalMosquitto, find_mosquitto
from lookout.rtsp_server import RtspCamera, read_stamp, video_frames, write_i420_frames
from lookout.sync.build import build_gallery_from_folders

log = get_logger(__name__)
DEFAULT_FACES_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces-dev"
BENCH_PHOTOS = ("bbt1", "bbt3", "bbt4", "bbt5")  # 4, 5, 6, 5 faces
# A benchmark is not a deployment, but it runs recognition like one: its gallery and its device say where they are
# (an unknown jurisdiction is denied), and the built-in policy allows this one.
BENCH_JURISDICTION = "US-CA"


def build_gallery(faces_dev: Path, workdir: Path, pipeline: FacePipeline) -> tuple[Path, Path]:
    """A signed bundle of faces-dev's identity folders: (bundle_dir, public_key_path)."""
    workdir = Path(workdir)
    private, public = generate_keys(workdir / "keys", overwrite=True)
    bundle = workdir / "bundle"
    build_gallery_from_folders(
        Path(faces_dev), bundle, private, pipeline, progress=False, jurisdiction=BENCH_JURISDICTION
    )
    return bundle, public


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


class StampedStream(CaptureSource):
    """The bench's RTSP camera as the device reads it, telling each frame's age from its capture stamp."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.ages_ms: list[float] = []

    def frame_age_s(self, image: np.ndarray) -> float:
        stamp = read_stamp(image)
        if stamp is None:
            return 0.0
        age = max(0.0, time.time() - stamp)
        self.ages_ms.append(age * 1000)
        return age


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon and RssFile of a process, in MB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                key, value = line.split(":", 1)
                fields[key] = int(value.split()[0]) / 1024
    return fields


def run_device_bench(
    faces_dev: Path,
    *,
    seconds: float = 20.0,
    fps: float = 25.0,
    model_dir=None,
    device: str = "CPU",
    embedder: str | None = None,
    workdir: Path | None = None,
    source: str = "file",
    memory: bool = True,
    gallery_photos: int = NAMUS_PHOTOS,
) -> dict:
    own_dir = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="lookout-bench-"))
    config = PipelineConfig(model_dir=model_dir, device=device)
    pipeline = FacePipeline.open(replace(config, embedder=embedder) if embedder else config)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} "
        f"(1 min avg, before the runs); OpenVINO device {device}"
    )
    print(
        f"models: {pipeline.detector.manifest.name} + {pipeline.embedder.name} "
        f"(embedder at {pipeline.embedder.precision}; `lookout models precision` chooses)"
    )
    bundle, public = build_gallery(faces_dev, workdir, pipeline)
    video = make_scene_video(
        workdir / "bench.mp4",
        faces_dev,
        fps=fps,
        photo_s=4.0,
        photos=BENCH_PHOTOS,
        blank_s=0.0,
        strangers=False,
        zoom=(1.0, 1.08),
    )
    print(
        f"video: {video.size[0]}x{video.size[1]} at {fps:g} fps, {video.duration_s:.0f} s looped, "
        f"3-6 faces per frame ({', '.join(BENCH_PHOTOS)})"
    )
    binary = find_mosquitto()
    (workdir / "mosquitto").mkdir(exist_ok=True)
    broker = LocalMosquitto(workdir=workdir / "mosquitto", binary=binary).start() if binary else None
    print("broker: " + (f"mosquitto on 127.0.0.1:{broker.port}" if broker else "none installed: in-memory stand-in"))
    results: dict = {}
    camera: RtspCamera | None = None
    try:
        base = {
            "device_id": "bench",
            "location": {"name": "bench", "jurisdiction": BENCH_JURISDICTION},
            "models": {"model_dir": model_dir, "device": device, **({"embedder": embedder} if embedder else {})},
            "gallery": {"bundle_dir": str(bundle), "public_key": str(public)},
            "status": {"heartbeat_s": 3600},
            "mqtt": {"host": "127.0.0.1", "port": broker.port if broker else 1883},
        }
        if source == "rtsp":
            camera = _start_camera(video.path, workdir, fps)
            runs = [("rtsp camera", "tracked", True, 3.0)]
        else:
            runs = [
                ("tracked", "tracked", False, 60.0),
                ("all faces", "all", False, 60.0),
                ("camera rate", "tracked", True, 3.0),
            ]
        for name, embed, realtime, cooldown in runs:
            url = camera.url if camera is not None else str(video.path)
            doc = {
                **base,
                "source": {"url": url, "realtime": realtime, "loop": True},
                "recognition": {"embed": embed},
                "events": {"cooldown_s": cooldown},
                "outbox": {"path": str(workdir / f"outbox-{embed}-{realtime}.sqlite")},
            }
            stream = StampedStream(url) if camera is not None else None
            results[name] = r = _run_once(doc, pipeline, broker, seconds, stream)
            _print_run(name, embed, realtime, cooldown, r, stream)
        if memory:
            results["memory"] = _memory_run(base, faces_dev, workdir, bundle, video.path, seconds, gallery_photos)
    finally:
        if camera is not None:
            camera.stop()
        if broker:
            broker.close()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nload after the runs: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    return results


def _start_camera(video: Path, workdir: Path, fps: float) -> RtspCamera:
    """The bench video served live over RTSP: every 5th frame stored raw, each shown 5 ticks (the disk and
    memory a 25 fps raw file would take, for a zoom that moves slowly anyway)."""
    frames = workdir / "camera.i420"
    count = write_i420_frames(video_frames(video, every=5), frames)
    camera = RtspCamera(width=1280, height=720, fps=fps, frames=frames, hold=5).start()
    print(f"camera: {camera.url} (GStreamer RTSP server, x264 live, {count} distinct frames, {fps:g} fps)")
    return camera


def _run_once(doc: dict, pipeline: FacePipeline, broker, seconds: float, stream: StampedStream | None) -> dict:
    cfg = DeviceConfig.model_validate(doc)
    runtime = Runtime(cfg, pipeline=pipeline, publisher=None if broker else MemoryPublisher(), source=stream)
    warm: dict = {}

    def mark() -> None:
        warm["frames"], warm["t"] = runtime.metrics.frames, time.perf_counter()

    threading.Timer(min(3.0, seconds / 4), mark).start()
    threading.Timer(seconds, runtime.request_stop).start()
    runtime.run()
    end = time.perf_counter()
    m = runtime.metrics
    return {
        "fps": (m.frames - warm.get("frames", 0)) / max(end - warm.get("t", end - 1), 1e-6),
        "stage_ms": m.stage_ms(),
        "frames": m.frames,
        "dropped": m.dropped_frames,
        "embedded_per_frame": m.embedded / max(m.frames, 1),
        "events": m.decisions,
        "delivered": m.events_delivered,
        "publish_p50": _pct(m.publish_latency, 50),
        "publish_p95": _pct(m.publish_latency, 95),
        "decided_p50": _pct(m.decision_latency, 50),
        "decided_p95": _pct(m.decision_latency, 95),
        "frame_p50": _pct(m.frame_latency, 50),
        "frame_p95": _pct(m.frame_latency, 95),
        "transport_p50": _pct(stream.ages_ms, 50) if stream else float("nan"),
        "transport_p95": _pct(stream.ages_ms, 95) if stream else float("nan"),
    }


def _print_run(name: str, embed: str, realtime: bool, cooldown: float, r: dict, stream) -> None:
    since = "captured by the camera" if stream is not None else "grabbed"
    stages = "  ".join(f"{k} {v:.1f}" for k, v in r["stage_ms"].items())
    print(f"\n[{name}] embed={embed} realtime={realtime} cooldown={cooldown:g}s")
    print(
        f"  sustained {r['fps']:.1f} fps over {r['frames']} frames, {r['embedded_per_frame']:.2f} faces "
        f"embedded per frame, {r['dropped']} frames dropped"
    )
    print(f"  per-stage mean ms: {stages}")
    if stream is not None:
        print(
            f"  transport (captured -> decoded on the device: encode, RTSP, decode): "
            f"p50 {r['transport_p50']:.0f} ms  p95 {r['transport_p95']:.0f} ms"
        )
    print(
        f"  events {r['events']} (delivered {r['delivered']}); {since} -> publish (PUBACK) "
        f"p50 {r['publish_p50']:.0f} ms  p95 {r['publish_p95']:.0f} ms; "
        f"{since} -> event in outbox p50 {r['decided_p50']:.0f} ms  p95 {r['decided_p95']:.0f} ms"
    )
    print(f"  every frame, {since} -> decided: p50 {r['frame_p50']:.0f} ms  p95 {r['frame_p95']:.0f} ms")


def _memory_run(
    base: dict, faces_dev: Path, workdir: Path, bundle: Path, video: Path, seconds: float, photos: int
) -> dict:
    """The device as its own process (``python -m lookout.device run``: the device part alone, as on a device)
    with a deployment-size gallery: its resident memory, and how much of it is file-backed (library pages
    the kernel can drop and re-read; how many are resident depends on the page cache)."""
    big = pad_gallery(bundle, workdir / "bundle-large", workdir / "keys" / PRIVATE_NAME, photos=photos)
    doc = {
        **base,
        "gallery": {**base["gallery"], "bundle_dir": str(big)},
        "source": {"url": str(video), "realtime": True, "loop": True},
        "events": {"cooldown_s": 3.0},
        "outbox": {"path": str(workdir / "outbox-memory.sqlite")},
    }
    config = workdir / "device-memory.yaml"
    config.write_text(yaml.safe_dump(json.loads(json.dumps(doc, default=str))))
    process = subprocess.Popen(
        [sys.executable, "-m", "lookout.device", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples: list[dict[str, float]] = []
    try:
        deadline = time.monotonic() + max(seconds, 20.0)
        while time.monotonic() < deadline and process.poll() is None:
            samples.append(rss_mb(process.pid))
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    late = samples[len(samples) // 2 :]

    def steady(key: str) -> float:
        return float(np.median([s[key] for s in late])) if late else float("nan")

    peak = samples[-1]["VmHWM"] if samples else float("nan")
    print(
        f"\n[memory] `python -m lookout.device run` as its own process, gallery of {photos:,} photos "
        f"(faces-dev + synthetic), camera rate, {max(seconds, 20.0):.0f} s: resident {steady('VmRSS'):.0f} MB steady "
        f"(median of the second half: anonymous {steady('RssAnon'):.0f} MB, file-backed {steady('RssFile'):.0f} MB), "
        f"{peak:.0f} MB peak (VmHWM); goal <= 300 MB"
    )
    return {"rss_mb": steady("VmRSS"), "anon_mb": steady("RssAnon"), "peak_mb": peak, "photos": photos}


def register_bench(benches: argparse._SubParsersAction) -> None:
    bench = benches.add_parser("device", help="the device loop: fps, per-stage ms, frame-to-publish latency")
    bench.add_argument("--faces-dev", type=Path, default=DEFAULT_FACES_DEV)
    bench.add_argument("--seconds", type=float, default=20.0, help="length of each of the three runs")
    bench.add_argument("--fps", type=float, default=25.0, help="frame rate of the test video")
    bench.add_argument("--device", default="CPU", help="OpenVINO device")
    bench.add_argument("--embedder", default=None, help="embedder model (default: the registry's default)")
    bench.add_argument(
        "--source",
        choices=("file", "rtsp"),
        default="file",
        help="file: the video read from disk (three runs); rtsp: served live by a real RTSP camera on loopback, "
        "latency counted from the camera's capture",
    )
    bench.add_argument("--no-memory", action="store_true", help="skip the resident-memory run")
    bench.add_argument(
        "--gallery-photos", type=int, default=NAMUS_PHOTOS, help="photos in the memory run's gallery (default 25,000)"
    )
    add_model_dir(bench)
    bench.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    if not (args.faces_dev / "groups.csv").exists():
        print(f"lookout: --faces-dev {args.faces_dev}: not found; the device bench needs faces-dev", file=sys.stderr)
        return 2
    run_device_bench(
        args.faces_dev,
        seconds=args.seconds,
        fps=args.fps,
        model_dir=args.model_dir,
        device=args.device,
        embedder=args.embedder,
        source=args.source,
        memory=not args.no_memory,
        gallery_photos=args.gallery_photos,
    )
    return 0
