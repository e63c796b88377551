"""Precision chosen by measurement (issue 16): every precision the device may run agrees with FP32 on real faces.

Beside the golden test (tests/test_dlib_golden.py, FP32 against dlib at 1e-4): here each embedder runs at
every precision this machine offers (FP32; BF16 where the CPU computes it; INT8, made in a few seconds
from faces-dev's identity photos) on faces the INT8 calibration never saw (faces-dev's group photos and
strangers), and is held to ``SCORE_TOLERANCE``: no similarity score between two real faces may move by
more than that, whether both sides run at the precision or one side is an FP32 gallery. A precision that
does not meet it is never chosen. Galleries record the precision they were built at and are searched at
another: tested end to end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from lookout.cli import main
from lookout.errors import ConfigError, ModelError
from lookout.evaluation.datasets import aligned_chips
from lookout.face.engine import InferenceEngine
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.gallery.keys import generate_keys
from lookout.gallery.policy import Policy
from lookout.gallery.reader import load_bundle
from lookout.model_store.precision import (
    SCORE_TOLERANCE,
    PrecisionRecord,
    device_identity,
    records,
    resolve,
    write_record,
)
from lookout.model_store.store import ModelStore
from lookout.models import precision as measuring
from lookout.models.quantize import quantize_embedder
from lookout.sync.build import build_gallery_from_folders
from tests.test_dlib_golden import GOLDEN_DIR

pytestmark = [pytest.mark.shared, pytest.mark.slow]
EMBEDDERS = ("dlib-resnet", "facenet")
ENGINE = InferenceEngine("CPU")


@pytest.fixture(scope="module")
def store(tmp_path_factory, model_store: ModelStore, faces_dev: Path) -> ModelStore:
    """A model store of its own, with an INT8 dlib-resnet made from faces-dev's identity photos."""
    store = ModelStore(tmp_path_factory.mktemp("precision") / "models")
    for name in ("blazeface-full", *EMBEDDERS):
        shutil.copytree(model_store.folder(name), store.folder(name))
    pytest.importorskip("nncf", reason="nncf is not installed: the INT8 variant cannot be made")
    fp32 = FacePipeline.open(
        PipelineConfig(model_dir=store.root, device="CPU", embedder="dlib-resnet", precision="fp32")
    )
    people = sorted(p for p in faces_dev.iterdir() if p.is_dir())
    calibration = aligned_chips([f for p in people for f in sorted(p.glob("*.png"))], fp32)
    quantize_embedder(store, "dlib-resnet", calibration, source="faces-dev identity photos", augment=3)
    return store


@pytest.fixture(scope="module")
def probe_images(faces_dev: Path) -> list[Path]:
    """Faces the INT8 calibration never saw: the group photos and the strangers."""
    return sorted(faces_dev.glob("*.jpg"))


def _chips(store: ModelStore, embedder: str, images: list[Path]) -> np.ndarray:
    pipeline = FacePipeline.open(PipelineConfig(model_dir=store.root, device="CPU", embedder=embedder))
    return measuring.real_face_chips(pipeline, images)


@pytest.mark.slow
@pytest.mark.parametrize("embedder", EMBEDDERS)
def test_every_precision_is_measured_and_only_agreeing_ones_are_chosen(store, probe_images, embedder):
    chips = _chips(store, embedder, probe_images)
    assert len(chips) >= 20
    result = measuring.measure(store, embedder, ENGINE, chips, faces_source="faces-dev", repeats=3, rounds=1)
    by_precision = {c.precision: c for c in result.candidates}
    assert by_precision["fp32"].deviation < 1e-5 and by_precision["fp32"].agrees
    for candidate in result.candidates:
        if not np.isnan(candidate.deviation):
            assert candidate.agrees == (candidate.deviation <= SCORE_TOLERANCE), candidate
    assert by_precision[result.chosen].agrees
    if ENGINE.supports("bf16"):
        bf16 = by_precision["bf16"]
        assert bf16.agrees, f"{embedder} at bf16 moved a score by {bf16.deviation:.4f} (> {SCORE_TOLERANCE})"
        assert bf16.min_cosine is not None and bf16.min_cosine >= 0.999
    if embedder == "dlib-resnet":
        assert not np.isnan(by_precision["int8"].deviation), by_precision["int8"].note  # measured, not skipped
    else:
        assert "no INT8 model" in by_precision["int8"].note


def test_bf16_reproduces_dlib_within_the_score_tolerance(store):
    """The golden chips at bf16 against dlib's own descriptors (FP32's tolerance there is 1e-4 per value)."""
    if not ENGINE.supports("bf16"):
        pytest.skip("this CPU does not compute in bf16")
    path = GOLDEN_DIR / "descriptors.json"
    if not path.is_file():
        pytest.skip(f"dlib golden data not found at {GOLDEN_DIR}")
    golden = json.loads(path.read_text())
    chips = np.stack(
        [cv2.cvtColor(cv2.imread(str(GOLDEN_DIR / f["chip"])), cv2.COLOR_BGR2RGB) for f in golden["faces"]]
    )
    reference = np.stack([np.asarray(f["descriptor"], np.float64) for f in golden["faces"]])
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    bf16 = FacePipeline.open(
        PipelineConfig(model_dir=store.root, device="CPU", embedder="dlib-resnet", precision="bf16")
    ).embedder
    assert bf16.precision == "bf16"
    deviation, min_cos = measuring.agreement(reference, bf16.embed(chips).astype(np.float64))
    assert deviation <= SCORE_TOLERANCE and min_cos >= 0.999, (deviation, min_cos)


def test_auto_takes_the_choice_recorded_for_this_device_only(store, tmp_path):
    local = ModelStore(tmp_path / "models")
    for name in ("blazeface-full", "dlib-resnet"):
        shutil.copytree(store.folder(name), local.folder(name))
    identity = device_identity(ENGINE.core, "CPU")
    assert resolve(local, "dlib-resnet", "auto", "CPU", identity).precision == "fp32"  # nothing measured yet
    manifest = local.manifest("dlib-resnet")
    digest = manifest.digest
    record = PrecisionRecord("CPU", identity[0], identity[1], "bf16", SCORE_TOLERANCE, 30, "test", "2026-12-01", 0.5)
    write_record(local.folder("dlib-resnet"), manifest, record)
    assert local.manifest("dlib-resnet").digest == digest, "a precision record must not change the model's identity"
    assert records(local.manifest("dlib-resnet"))["CPU"].chosen == "bf16"
    if ENGINE.supports("bf16"):
        pipeline = FacePipeline.open(PipelineConfig(model_dir=local.root, device="CPU", embedder="dlib-resnet"))
        assert pipeline.embedder.precision == "bf16" and pipeline.embedder.digest == digest
    elsewhere = PrecisionRecord("CPU", "Another CPU", identity[1], "bf16", SCORE_TOLERANCE, 30, "test", "x", 0.5)
    write_record(local.folder("dlib-resnet"), local.manifest("dlib-resnet"), elsewhere)
    assert resolve(local, "dlib-resnet", "auto", "CPU", identity).precision == "fp32"  # measured on other hardware
    with pytest.raises(ModelError, match="int8"):
        resolve(local, "dlib-resnet", "int8", "CPU", identity)  # no INT8 model in this store
    with pytest.raises(ConfigError, match="unknown precision"):
        resolve(local, "dlib-resnet", "fp8", "CPU", identity)


@pytest.mark.slow
def test_gallery_built_at_fp32_is_searched_at_other_precisions(store, faces_dev, probe_images, tmp_path, jurisdiction):
    """Cloud at FP32, device at BF16 or INT8: same people found, scores within the tolerance, or refused."""
    fp32 = FacePipeline.open(
        PipelineConfig(model_dir=store.root, device="CPU", embedder="dlib-resnet", precision="fp32")
    )
    private, public = generate_keys(tmp_path / "keys")
    build_gallery_from_folders(faces_dev, tmp_path / "bundle", private, fp32, progress=False, jurisdiction=jurisdiction)
    gallery = load_bundle(tmp_path / "bundle", public, fp32.embedder.digest, Policy.default(), location="GB")
    assert gallery.manifest.model.precision == "fp32"
    chips = measuring.real_face_chips(fp32, probe_images)
    reference = gallery.search(fp32.embed(chips), k=2)
    checked = 0
    for precision in ("bf16", "int8"):
        if not ENGINE.supports(precision):
            continue
        device = FacePipeline.open(
            PipelineConfig(model_dir=store.root, device="CPU", embedder="dlib-resnet", precision=precision)
        )
        assert device.embedder.digest == fp32.embedder.digest  # the bundle's model check passes
        load_bundle(tmp_path / "bundle", public, device.embedder.digest, Policy.default(), location="GB")
        results = gallery.search(device.embed(chips), k=2)
        diffs = [abs(a[0].score - b[0].score) for a, b in zip(reference, results) if a and b]
        same_top = sum(a[0].person_id == b[0].person_id for a, b in zip(reference, results) if a and b)
        if precision == "bf16":
            assert max(diffs) <= SCORE_TOLERANCE and same_top == len(diffs)
        checked += 1
    assert checked >= 1
    # A gallery built at bf16 says so in its signed manifest.
    if ENGINE.supports("bf16"):
        bf16 = FacePipeline.open(
            PipelineConfig(model_dir=store.root, device="CPU", embedder="dlib-resnet", precision="bf16")
        )
        report = build_gallery_from_folders(
            faces_dev, tmp_path / "bundle-bf16", private, bf16, progress=False, jurisdiction=jurisdiction
        )
        assert report.manifest.model.precision == "bf16"
        assert report.manifest.model.digest == gallery.manifest.model.digest


@pytest.mark.slow
def test_models_precision_command_records_its_choice(store, probe_images, tmp_path, capsys):
    local = ModelStore(tmp_path / "models")
    for name in ("blazeface-full", "dlib-resnet", "dlib-resnet-int8"):
        shutil.copytree(store.folder(name), local.folder(name))
    faces = tmp_path / "faces"
    faces.mkdir()
    for image in probe_images[:4]:
        shutil.copy(image, faces / image.name)
    argv = ["models", "precision", "dlib-resnet", "--faces", str(faces), "--device", "CPU"]
    argv += ["--rounds", "1", "--repeats", "2", "--model-dir", str(local.root)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "dlib-resnet on CPU" in out and "fp32" in out and "int8" in out and "<- chosen" in out
    record = records(local.manifest("dlib-resnet"))["CPU"]
    assert record.chosen in ("fp32", "bf16", "int8") and {c.precision for c in record.candidates} >= {"fp32", "int8"}
    assert record.tolerance == SCORE_TOLERANCE and record.faces >= 4
    assert main(["models", "list", "--model-dir", str(local.root)]) == 0
    assert f"precision: {record.chosen} on CPU" in capsys.readouterr().out
