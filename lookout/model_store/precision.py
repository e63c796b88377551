"""Inference precision: the number format a model runs in on a device, chosen by measurement.

Precisions:

- ``fp32``: the reference. The model's IR computed in 32-bit floats (OpenVINO's
  ``INFERENCE_PRECISION_HINT=f32``).
- ``bf16``: the same IR computed in bfloat16 where the device supports it (CPUs with
  AVX512-BF16 or AMX; ``INFERENCE_PRECISION_HINT=bf16``).
- ``int8``: a separate, quantised IR, ``<name>-int8`` in the model store (made by
  ``lookout models quantize``, or published so by the model's maker), its remaining
  float parts in f32.

``lookout models precision`` measures each on real faces and records, in the model's
manifest under ``extra["precision_by_device"][<device>]``, a :class:`PrecisionRecord`: the
fastest precision whose **similarity scores agree with FP32's within
``SCORE_TOLERANCE``** (every pair of real faces; one side at FP32 as a gallery built
in the cloud would be, the other at the candidate precision as on the device; and
both at the candidate), with what was measured. A model opened with precision
``auto`` uses that choice when it was measured on this very device (same device name
and OpenVINO version) and FP32 otherwise.

A model's identity (its digest, which bundles record) is the FP32 model's whatever
precision runs it; bundles record the precision they were embedded at beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openvino as ov

from lookout.errors import ConfigError, ModelError
from lookout.log import get_logger
from lookout.model_store.manifest import ModelManifest
from lookout.model_store.store import ModelStore

log = get_logger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
REQUESTS = ("auto", *PRECISIONS)
INT8_SUFFIX = "-int8"
# Largest change of any similarity score between two real faces that a precision may cause.
# Decisions use a threshold and a 0.05 margin over the second person; 0.01 is a fifth of that.
SCORE_TOLERANCE = 0.01
# Detectors: largest keypoint shift (share of the face's width) and no clear face lost. Alignment
# moves with the keypoints; 1% of the face width is about a pixel on a 112-pixel chip.
KEYPOINT_TOLERANCE = 0.01
# A precision must beat FP32 by this share to be chosen: timing noise on a shared machine is ~5%.
MIN_SPEEDUP = 1.10
OV_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# Where records live in a manifest's ``extra`` (``extra["precision"]`` already names a derived model's own format).
RECORDS_KEY = "precision_by_device"


def int8_name(name: str) -> str:
    return name + INT8_SUFFIX


@dataclass
class Candidate:
    """One precision as measured: speed and agreement with FP32.

    ``deviation`` is what the tolerance applies to: for embedders the worst change of a
    similarity score between two real faces; for detectors the worst keypoint shift as a
    share of the face's width."""

    precision: str
    ms_batch1: float  # per face (embedders) or per frame (detectors)
    ms_batch8: float | None  # embedders: per face at batch 8
    deviation: float
    min_cosine: float | None  # embedders: worst cosine to the same face's FP32 embedding
    agrees: bool
    note: str = ""

    @property
    def speed_ms(self) -> float:
        """What is ranked: the geometric mean of batch-1 and batch-8 time per face (detectors: per frame)."""
        if self.ms_batch8 is None:
            return self.ms_batch1
        return float((self.ms_batch1 * self.ms_batch8) ** 0.5)


@dataclass
class PrecisionRecord:
    """What ``lookout models precision`` found for one model on one device."""

    device: str  # OpenVINO device name as configured (CPU, GPU, ...)
    device_name: str  # the device's FULL_DEVICE_NAME: the choice holds for this hardware only
    openvino: str
    chosen: str
    tolerance: float  # SCORE_TOLERANCE (embedders) or KEYPOINT_TOLERANCE (detectors)
    faces: int  # real faces the agreement was measured on
    faces_source: str
    measured_at: str
    load_average: float
    candidates: list[Candidate] = field(default_factory=list)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PrecisionRecord:
        candidates = [Candidate(**c) for c in doc.get("candidates", [])]
        return cls(**{**doc, "candidates": candidates})


def device_key(device: str) -> str:
    """The device a record is filed under: AUTO with one device is that device."""
    return device.split(":")[0].upper()


def device_identity(core: ov.Core, device: str) -> tuple[str, str]:
    """(FULL_DEVICE_NAME, OpenVINO version) of ``device`` as this machine sees it."""
    target = "CPU" if device_key(device) == "AUTO" else device
    try:
        name = str(core.get_property(target, "FULL_DEVICE_NAME"))
    except RuntimeError:
        name = target
    return name, ov.get_version()


def records(manifest: ModelManifest) -> dict[str, PrecisionRecord]:
    return {k: PrecisionRecord.from_dict(v) for k, v in manifest.extra.get(RECORDS_KEY, {}).items()}


def recorded_choice(manifest: ModelManifest, device: str, identity: tuple[str, str]) -> PrecisionRecord | None:
    """The record for ``device`` if it was measured on this hardware and OpenVINO version, else None."""
    key = "CPU" if device_key(device) == "AUTO" else device_key(device)
    record = records(manifest).get(key)
    if record is None or (record.device_name, record.openvino) != identity:
        return None
    return record


def write_record(folder: Path, manifest: ModelManifest, record: PrecisionRecord) -> ModelManifest:
    """Store ``record`` in the manifest in ``folder`` (other devices' records kept). The model's files and
    digest are untouched: precision is how it is run, not what it is."""
    doc = dict(manifest.extra.get(RECORDS_KEY, {}))
    doc[device_key(record.device)] = asdict(record)
    manifest.extra = {**manifest.extra, RECORDS_KEY: doc}
    manifest.write(folder)
    return manifest


def check_request(precision: str) -> str:
    if precision not in REQUESTS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(REQUESTS)}")
    return precision


def int8_manifest_problem(base: ModelManifest, int8: ModelManifest) -> str | None:
    """Why an INT8 model cannot stand in for ``base`` (made from another version of it), or None."""
    if int8.extra.get("derived_from") != base.name:
        return f"{int8.name} is not derived from {base.name}"
    if int8.extra.get("source_digest") != base.digest:
        return f"{int8.name} was made from another version of {base.name}; run `lookout models quantize` again"
    return None


@dataclass(frozen=True)
class Resolved:
    """The model to compile for a requested precision: the IR, the precision, and the manifest that is its
    identity (the FP32 model's, whatever runs it)."""

    model: ov.Model
    manifest: ModelManifest
    precision: str
    why: str


def resolve(store: ModelStore, name: str, request: str, device: str, identity: tuple[str, str]) -> Resolved:
    """The IR and precision to run model ``name`` at for ``request`` (auto, fp32, bf16, int8) on ``device``.

    ``auto`` takes the choice recorded for this hardware and OpenVINO version, else FP32.
    ``int8`` needs ``<name>-int8`` made from this very model (its ``source_digest``)."""
    check_request(request)
    name = store.available(name)  # the model itself, or the PyPI fallback standing in for it
    model, manifest = store.read_model(name)
    precision, why = request, "asked for in the configuration"
    if request == "auto":
        record = recorded_choice(manifest, device, identity)
        if record is None:
            precision, why = "fp32", "no precision measured on this device (`lookout models precision` measures it)"
        else:
            precision, why = record.chosen, f"measured on {record.device_name} on {record.measured_at[:10]}"
    if precision == "int8":
        int8 = int8_name(name)
        try:
            int8_model, int8_manifest = store.read_model(int8)
        except ModelError as err:
            raise ModelError(f"{name} at int8: {err}") from None
        problem = int8_manifest_problem(manifest, int8_manifest)
        if problem:
            raise ModelError(f"{name} at int8: {problem}")
        model = int8_model
    return Resolved(model, manifest, precision, why)
