"""`lookout bench models`: detection and embedding speed, measured here and now."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from lookout.face.pipeline import FacePipeline

FRAME_SIZES = ((640, 480), (1280, 720), (1920, 1080))


def timings_ms(fn: Callable[[], object], runs: int, warmup: int = 5) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - start) * 1000
    return out


def describe(label: str, ms: np.ndarray, per: int = 1) -> str:
    rate = 1000.0 * per / np.median(ms)
    return f"{label:34s} median {np.median(ms):7.2f} ms   p95 {np.percentile(ms, 95):7.2f} ms   {rate:8.1f} /s"


def synthetic_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def run_model_bench(pipeline: FacePipeline, runs: int) -> None:
    det, emb = pipeline.detector, pipeline.embedder
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}; device {','.join(det.execution_devices)}"
    )
    print(
        f"detector {det.manifest.name} ({det.size}x{det.size}), embedder {emb.name} "
        f"({emb.chip_size[0]}x{emb.chip_size[1]} -> {emb.dim}-d) at {emb.precision}"
    )
    for width, height in FRAME_SIZES:
        frame = synthetic_frame(width, height)
        # One model pass per frame (the device path): letterbox + inference + decode, no padded retry.
        ms = timings_ms(partial(det.run, frame), runs)
        print(describe(f"detect {width}x{height}", ms))
    for batch in (1, 8):
        chips = np.random.default_rng(1).integers(
            0, 256, (batch, emb.chip_size[1], emb.chip_size[0], 3), dtype=np.uint8
        )
        ms = timings_ms(partial(emb.embed, chips), runs if batch == 1 else max(10, runs // 4))
        print(describe(f"embed batch {batch} (per batch)", ms, per=batch) + "  faces")
        print(f"{'':34s} per face {np.median(ms) / batch:7.2f} ms")
