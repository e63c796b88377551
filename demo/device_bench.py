"""`lookout bench device`: the whole device loop on a 1280x720 video of 3-6 faces per frame.

Three runs of the real runtime (real models, real gallery bundle, real mosquitto on
loopback when installed, else an in-memory broker stand-in that acknowledges at once):

1. sustained, tracked: frames as fast as the loop takes them, faces embedded as the
   tracker decides (the normal mode);
2. sustained, all faces: every face embedded in every frame;
3. camera rate: the video played in real time at its own fps (frames dropped if the
   loop falls behind), tracked; frame-to-publish latency = from the frame being
   grabbed to the broker's PUBACK of the event it produced, and per-frame latency
   (grabbed -> decided) over every frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from lookout.device.config import DeviceConfig
from lookout.device.publisher import MemoryPublisher
from lookout.device.runtime import Runtime
from lookout.device.videomaker import make_scene_video
from lookout.face.options import add_model_dir
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.gallery.keys import generate_keys
from lookout.log import get_logger
from lookout.mosquitto import LocalMosquitto, find_mosquitto
from lookout.sync.build import build_gallery_from_folders

log = get_logger(__name__)
DEFAULT_FACES_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces-dev"
BENCH_PHOTOS = ("bbt1", "bbt3", "bbt4", "bbt5")  # 4, 5, 6, 5 faces


def build_gallery(faces_dev: Path, workdir: Path, pipeline: FacePipeline) -> tuple[Path, Path]:
    """A signed bundle of faces-dev's identity folders: (bundle_dir, public_key_path)."""
    workdir = Path(workdir)
    private, public = generate_keys(workdir / "keys", overwrite=True)
    bundle = workdir / "bundle"
    build_gallery_from_folders(Path(faces_dev), bundle, private, pipeline, progress=False)
    return bundle, public


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def run_device_bench(
    faces_dev: Path,
    *,
    seconds: float = 20.0,
    fps: float = 25.0,
    model_dir=None,
    device: str = "CPU",
    embedder: str | None = None,
    workdir: Path | None = None,
) -> dict:
    own_dir = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="lookout-bench-"))
    config = PipelineConfig(model_dir=model_dir, device=device)
    pipeline = FacePipeline.open(replace(config, embedder=embedder) if embedder else config)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} "
        f"(1 min avg, before the runs); OpenVINO device {device}"
    )
    print(f"models: {pipeline.detector.manifest.name} + {pipeline.embedder.name}")
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
    results = {}
    try:
        for name, embed, realtime, cooldown in (
            ("tracked", "tracked", False, 60.0),
            ("all faces", "all", False, 60.0),
            ("camera rate", "tracked", True, 3.0),
        ):
            doc = {
                "device_id": "bench",
                "source": {"url": str(video.path), "realtime": realtime, "loop": True},
                "models": {"model_dir": model_dir, "device": device, **({"embedder": embedder} if embedder else {})},
                "gallery": {"bundle_dir": str(bundle), "public_key": str(public)},
                "recognition": {"embed": embed},
                "events": {"cooldown_s": cooldown},
                "outbox": {"path": str(workdir / f"outbox-{embed}-{realtime}.sqlite")},
                "status": {"heartbeat_s": 3600},
                "mqtt": {"host": "127.0.0.1", "port": broker.port if broker else 1883},
            }
            cfg = DeviceConfig.model_validate(doc)
            runtime = Runtime(cfg, pipeline=pipeline, publisher=None if broker else MemoryPublisher())
            timer = threading.Timer(seconds, runtime.request_stop)
            warm: dict[str, float] = {}

            def mark(warm: dict[str, float] = warm, runtime: Runtime = runtime) -> None:
                warm["frames"], warm["t"] = runtime.metrics.frames, time.perf_counter()

            threading.Timer(min(3.0, seconds / 4), mark).start()
            timer.start()
            runtime.run()
            end = time.perf_counter()
            m = runtime.metrics
            sustained = (m.frames - warm.get("frames", 0)) / max(end - warm.get("t", end - 1), 1e-6)
            results[name] = r = {
                "fps": sustained,
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
            }
            stages = "  ".join(f"{k} {v:.1f}" for k, v in m.stage_ms().items())
            print(f"\n[{name}] embed={embed} realtime={realtime} cooldown={cooldown:g}s")
            print(
                f"  sustained {r['fps']:.1f} fps over {r['frames']} frames, {r['embedded_per_frame']:.2f} faces "
                f"embedded per frame, {r['dropped']} frames dropped"
            )
            print(f"  per-stage mean ms: {stages}")
            print(
                f"  events {r['events']} (delivered {r['delivered']}); frame->publish (PUBACK) "
                f"p50 {r['publish_p50']:.0f} ms  p95 {r['publish_p95']:.0f} ms; "
                f"frame->event in outbox p50 {r['decided_p50']:.0f} ms  p95 {r['decided_p95']:.0f} ms"
            )
            print(f"  every frame, grabbed->decided: p50 {r['frame_p50']:.0f} ms  p95 {r['frame_p95']:.0f} ms")
    finally:
        if broker:
            broker.close()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nload after the runs: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    return results


def register_bench(benches: argparse._SubParsersAction) -> None:
    bench = benches.add_parser("device", help="the device loop: fps, per-stage ms, frame-to-publish latency")
    bench.add_argument("--faces-dev", type=Path, default=DEFAULT_FACES_DEV)
    bench.add_argument("--seconds", type=float, default=20.0, help="length of each of the three runs")
    bench.add_argument("--fps", type=float, default=25.0, help="frame rate of the test video")
    bench.add_argument("--device", default="CPU", help="OpenVINO device")
    bench.add_argument("--embedder", default=None, help="embedder model (default: the registry's default)")
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
    )
    return 0
