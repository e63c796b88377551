"""Golden test: the OpenVINO rebuild of dlib's face descriptor ResNet reproduces dlib.

Reference: ``../shared/data/dlib-golden`` (10 aligned 150x150 RGB chips and the
descriptors dlib 20.0.1 computed from them). The model file comes from
``LOOKOUT_DLIB_DAT``; without it these tests skip.

Tolerances (measured, see docs/dlib-conversion.md): at f32 inference precision
every descriptor matches dlib to max |diff| <= 3.5e-7 and cosine 1.0000000
(the JSON itself is rounded to 7 decimals). We allow max |diff| <= 1e-4
(about 300x the measured error, room for other CPUs' kernels and accumulation
order) and cosine >= 0.9999. 1e-4 still catches the model being run at bf16,
OpenVINO's default on CPUs with AVX512-BF16/AMX, which gives max |diff| ~3e-3.

These tolerances are FP32's. Other precisions are held to the score tolerance of
``lookout.model_store.precision`` against FP32 and against these same descriptors:
tests/test_precision.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import pytest

from lookout.errors import ModelError
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.models.dlib_resnet import build_dlib_resnet, read_dlib_net
from lookout.models.install import install, source_file

SHARED_DIR = Path(os.environ.get("LOOKOUT_SHARED_DIR", Path(__file__).resolve().parents[1].parent / "shared"))
GOLDEN_DIR = SHARED_DIR / "data" / "dlib-golden"

MIN_COSINE = 0.9999
MAX_ABS_DIFF = 1e-4
BATCH_MAX_ABS_DIFF = 1e-5  # batched vs one-by-one; measured 0 to ~1e-7


def dlib_dat_path() -> Path:
    """The dlib .dat model: ``LOOKOUT_DLIB_DAT`` if set, else the one the model store fetched."""
    value = os.environ.get("LOOKOUT_DLIB_DAT")
    if value:
        path = Path(value)
        if not path.is_file():
            pytest.skip(f"dlib model not available: LOOKOUT_DLIB_DAT={path} is not a file")
        return path
    from lookout.model_store.store import ModelStore

    store = ModelStore()
    install(store, "dlib-resnet")
    return source_file(store, "dlib-resnet")


@pytest.fixture(scope="module")
def dat_path() -> Path:
    return dlib_dat_path()


@pytest.fixture(scope="module")
def golden() -> dict:
    path = GOLDEN_DIR / "descriptors.json"
    if not path.is_file():
        pytest.skip(f"dlib golden data not found at {GOLDEN_DIR} (needs ../shared/data/dlib-golden beside the project)")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def compiled(dat_path: Path) -> ov.CompiledModel:
    # f32 on purpose: the CPU plugin's default may be bf16 (see module docstring).
    return ov.Core().compile_model(build_dlib_resnet(dat_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def _read_chip(name: str) -> np.ndarray:
    image = cv2.imread(str(GOLDEN_DIR / name), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {GOLDEN_DIR / name}"
    assert image.shape == (150, 150, 3), f"{name}: chip shape {image.shape}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32)


def _describe(compiled: ov.CompiledModel, chips: np.ndarray) -> np.ndarray:
    return compiled({"chips": chips})["descriptor"]


@pytest.mark.shared
def test_model_file_is_the_golden_one(dat_path: Path, golden: dict) -> None:
    digest = hashlib.sha256(dat_path.read_bytes()).hexdigest()
    assert digest == golden["model_sha256"], f"{dat_path} is not the model the golden data used"


@pytest.mark.shared
def test_descriptors_match_dlib(compiled: ov.CompiledModel, golden: dict) -> None:
    faces = golden["faces"]
    chips = np.stack([_read_chip(face["chip"]) for face in faces])
    ours = _describe(compiled, chips)
    assert ours.shape == (len(faces), 128)
    failures = []
    for face, got in zip(faces, ours):
        want = np.asarray(face["descriptor"], dtype=np.float32)
        cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
        max_abs = float(np.abs(got - want).max())
        if cosine < MIN_COSINE or max_abs > MAX_ABS_DIFF:
            failures.append(f"{face['chip']}: cosine {cosine:.7f}, max |diff| {max_abs:.2e}")
    assert not failures, "descriptors differ from dlib:\n" + "\n".join(failures)


@pytest.mark.shared
def test_batch_of_four_equals_one_by_one(compiled: ov.CompiledModel, golden: dict) -> None:
    chips = np.stack([_read_chip(face["chip"]) for face in golden["faces"][:4]])
    batched = _describe(compiled, chips)
    single = np.concatenate([_describe(compiled, chip[None]) for chip in chips])
    assert batched.shape == single.shape == (4, 128)
    np.testing.assert_allclose(batched, single, rtol=0, atol=BATCH_MAX_ABS_DIFF)


def test_reader_sees_dlib_structure(dat_path: Path) -> None:
    net = read_dlib_net(dat_path)
    assert net.input.nr == net.input.nc == 150
    np.testing.assert_allclose(net.input.avg_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    assert net.loss is not None and net.loss.distance_threshold == pytest.approx(0.6)
    assert len(net.layers) == 130


@pytest.mark.parametrize("keep", [0, 3, 200, 5_000_000, -1])
def test_truncated_file_raises_model_error(dat_path: Path, tmp_path: Path, keep: int) -> None:
    data = dat_path.read_bytes()
    broken = tmp_path / "truncated_dlib.dat"
    broken.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(ModelError, match=r"truncated_dlib\.dat"):
        read_dlib_net(broken)


def test_garbled_file_raises_model_error(dat_path: Path, tmp_path: Path) -> None:
    data = bytearray(dat_path.read_bytes())
    at = data.index(b"con_4")
    data[at : at + 5] = b"cxn_9"
    broken = tmp_path / "garbled_dlib.dat"
    broken.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"garbled_dlib\.dat.*cxn_9"):
        read_dlib_net(broken)


def test_missing_file_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"absent\.dat"):
        read_dlib_net(tmp_path / "absent.dat")


def test_trailing_bytes_raise_model_error(dat_path: Path, tmp_path: Path) -> None:
    broken = tmp_path / "padded_dlib.dat"
    shutil.copyfile(dat_path, broken)
    with broken.open("ab") as out:
        out.write(b"\x00")
    with pytest.raises(ModelError, match=r"padded_dlib\.dat"):
        read_dlib_net(broken)


def test_converted_ir_in_the_store_reproduces_normalised_descriptors(golden: dict, model_store) -> None:
    """The IR `lookout models fetch` writes (uint8 chips in, unit vectors out), run at FP32, matches dlib too."""
    config = PipelineConfig(model_dir=model_store.root, device="CPU", embedder="dlib-resnet", precision="fp32")
    embedder = FacePipeline.open(config).embedder
    assert embedder.precision == "fp32"
    chips = np.stack([_read_chip(face["chip"]).astype(np.uint8) for face in golden["faces"]])
    vectors = embedder.embed(chips)
    for face, vector in zip(golden["faces"], vectors):
        reference = np.asarray(face["descriptor"], np.float32)
        reference /= np.linalg.norm(reference)
        assert float(vector @ reference) >= 0.9999, face["chip"]
