"""`lookout models precision`: run each model at every precision the device offers, on real faces, and
record the fastest one whose results agree with FP32 (``lookout.model_store.precision`` says what
"agree" means and how the choice is used).

Speed is measured interleaved (every precision in turn, several rounds, the best round's median
counted) so that other processes on a shared machine slow all of them alike; the load average is
recorded with the figures. Agreement is measured on the faces of the photos given (``--faces``),
aligned as the device aligns them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from lookout.errors import InputError, ModelError
from lookout.face.embedder import FaceEmbedder
from lookout.face.engine import InferenceEngine
from lookout.face.pipeline import FacePipeline
from lookout.log import get_logger
from lookout.model_store.manifest import ModelManifest
from lookout.model_store.precision import (
    MIN_SPEEDUP,
    PRECISIONS,
    SCORE_TOLERANCE,
    Candidate,
    PrecisionRecord,
    device_identity,
    int8_manifest_problem,
    int8_name,
    write_record,
)
from lookout.model_store.store import ModelStore

log = get_logger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
BATCH = 8


@dataclass
class Variant:
    """One way of running a model: a precision and the embedder stage running it (as the device would)."""

    precision: str
    embedder: FaceEmbedder


def variants(store: ModelStore, name: str, engine: InferenceEngine, hint: str = "LATENCY") -> tuple[list, list]:
    """([Variant], [(precision, why not)]) for ``name`` on ``engine``'s device."""
    model, manifest = store.read_model(name)
    usable: list[Variant] = []
    skipped: list[tuple[str, str]] = []
    for precision in PRECISIONS:
        if not engine.supports(precision):
            skipped.append((precision, f"{engine.device} cannot compute in {precision}"))
            continue
        ir = model
        if precision == "int8":
            found = _int8_model(store, manifest)
            if isinstance(found, str):
                skipped.append((precision, found))
                continue
            ir = found
        stage = FaceEmbedder(ir, manifest, engine, hint=hint, max_batch=BATCH, jobs=1, precision=precision)
        usable.append(Variant(precision, stage))
    return usable, skipped


def _int8_model(store: ModelStore, base: ModelManifest) -> ov.Model | str:
    """The INT8 IR standing in for ``base``, or why there is none."""
    name = int8_name(base.name)
    if not store.status(name).present:
        return f"no INT8 model ({name}; `lookout models quantize --model {base.name}` makes one)"
    try:
        model, manifest = store.read_model(name)
    except ModelError as err:
        return str(err)
    return int8_manifest_problem(base, manifest) or model


def image_files(folders: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"faces folder {folder}", "does not exist or is not a folder")
        found += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return found


def real_face_chips(pipeline: FacePipeline, images: list[Path]) -> np.ndarray:
    """Every face found in the photos, aligned for the pipeline's embedder (as the device aligns)."""
    chips = []
    for path in images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            log.warning("precision.unreadable_image", path=str(path))
            continue
        faces = pipeline.detect(image)
        if faces:
            chips.append(pipeline.align(image, faces))
    if not chips:
        raise InputError("faces for the precision check", "no face found in any of the photos")
    return np.ascontiguousarray(np.concatenate(chips))


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        run()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        run()
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1000)


def interleaved_ms(runs: dict[str, Callable[[], object]], repeats: int, rounds: int) -> dict[str, float]:
    """Per key, the best round's median time (ms): every key timed in turn, ``rounds`` times."""
    best = {key: float("inf") for key in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            best[key] = min(best[key], _median_ms(run, repeats))
    return best


def agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(worst |score change| over every pair, FP32 gallery x other probe and other x other; worst self-cosine)."""
    ref_scores = reference @ reference.T
    cross = reference @ other.T
    both = other @ other.T
    deviation = max(float(np.abs(cross - ref_scores).max()), float(np.abs(both - ref_scores).max()))
    return deviation, float(np.diag(cross).min())


def measure_embedder(variants_: list[Variant], chips: np.ndarray, repeats: int, rounds: int) -> list[Candidate]:
    outputs = {v.precision: v.embedder.embed(chips).astype(np.float64) for v in variants_}
    reference = outputs["fp32"]
    stages = {v.precision: v.embedder for v in variants_}
    one, eight = chips[:1], chips[:BATCH]
    batch1 = interleaved_ms({p: partial(e.embed, one) for p, e in stages.items()}, repeats, rounds)
    batch8 = interleaved_ms({p: partial(e.embed, eight) for p, e in stages.items()}, repeats, rounds)
    candidates = []
    for v in variants_:
        deviation, min_cos = agreement(reference, outputs[v.precision])
        candidates.append(
            Candidate(
                precision=v.precision,
                ms_batch1=round(batch1[v.precision], 3),
                ms_batch8=round(batch8[v.precision] / len(eight), 3),
                deviation=round(deviation, 6),
                min_cosine=round(min_cos, 6),
                agrees=v.precision == "fp32" or deviation <= SCORE_TOLERANCE,
            )
        )
    return candidates


def choose(candidates: list[Candidate]) -> str:
    """The fastest agreeing precision; FP32 unless another is at least ``MIN_SPEEDUP`` times faster."""
    reference = next(c for c in candidates if c.precision == "fp32")
    faster = [c for c in candidates if c.agrees and c.speed_ms * MIN_SPEEDUP <= reference.speed_ms]
    return min(faster, key=lambda c: c.speed_ms).precision if faster else "fp32"


def measure(
    store: ModelStore,
    name: str,
    engine: InferenceEngine,
    chips: np.ndarray,
    *,
    faces_source: str,
    repeats: int = 20,
    rounds: int = 3,
) -> PrecisionRecord:
    """Measure embedder ``name`` at every precision on ``chips`` (aligned for it); the record, not yet stored."""
    usable, skipped = variants(store, name, engine)
    candidates = measure_embedder(usable, chips, repeats, rounds)
    for precision, why in skipped:
        candidates.append(Candidate(precision, float("nan"), None, float("nan"), None, False, note=why))
    device_name, version = device_identity(engine.core, engine.device)
    return PrecisionRecord(
        device=engine.device,
        device_name=device_name,
        openvino=version,
        chosen=choose(candidates),
        tolerance=SCORE_TOLERANCE,
        faces=len(chips),
        faces_source=faces_source,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        load_average=round(os.getloadavg()[0], 2),
        candidates=candidates,
    )


def record(store: ModelStore, name: str, result: PrecisionRecord) -> None:
    """Write the choice into the model's manifest."""
    write_record(store.folder(name), store.manifest(name), result)
    log.info("precision.recorded", model=name, device=result.device, chosen=result.chosen)


def table(name: str, result: PrecisionRecord) -> list[str]:
    """Printable lines: every precision side by side, the chosen one marked."""
    reference = next(c for c in result.candidates if c.precision == "fp32")
    lines = [
        f"{name} on {result.device} ({result.device_name}, OpenVINO {result.openvino}), "
        f"{result.faces} real faces ({result.faces_source}), load {result.load_average}:",
        f"  {'precision':9s} {'ms/face b1':>10s} {'ms/face b8':>10s} {'speed-up':>8s} "
        f"{'max |dscore|':>12s} {'min cos':>9s}  verdict",
    ]
    for c in result.candidates:
        if c.note and np.isnan(c.ms_batch1):
            lines.append(f"  {c.precision:9s} {'-':>10s} {'-':>10s} {'-':>8s} {'-':>12s} {'-':>9s}  {c.note}")
            continue
        verdict = "agrees" if c.agrees else f"DISAGREES (> {result.tolerance})"
        if c.precision == result.chosen:
            verdict += "  <- chosen"
        b8 = f"{c.ms_batch8:10.3f}" if c.ms_batch8 is not None else f"{'-':>10s}"
        cos = f"{c.min_cosine:9.6f}" if c.min_cosine is not None else f"{'-':>9s}"
        lines.append(
            f"  {c.precision:9s} {c.ms_batch1:10.3f} {b8} {reference.speed_ms / c.speed_ms:7.2f}x "
            f"{c.deviation:12.6f} {cos}  {verdict}"
        )
    return lines
