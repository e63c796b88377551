"""Detection with the real BlazeFace model."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from lookout.face.anchors import anchor_centres
from lookout.face.detector import DetectorConfig, FaceDetector, iou, tile_regions
from lookout.face.engine import InferenceEngine
from tests.helpers import STRANGERS


def test_anchor_counts_match_the_models() -> None:
    assert anchor_centres("full_range").shape == (2304, 2)
    assert anchor_centres("short_range").shape == (896, 2)


def test_every_listed_group_face_is_found(pipeline, faces_dev) -> None:
    with open(faces_dev / "groups.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 22
    cache: dict[str, list] = {}
    for row in rows:
        if row["image"] not in cache:
            cache[row["image"]] = pipeline.detect(cv2.imread(str(faces_dev / row["image"])))
        listed = np.array([float(row[k]) for k in ("x1", "y1", "x2", "y2")], np.float32)
        boxes = np.stack([f.box for f in cache[row["image"]]])
        assert iou(listed, boxes).max() >= 0.4, f"{row['image']}: {row['identity']} not found"


def test_tight_identity_crops_and_strangers_have_one_face(pipeline, faces_dev) -> None:
    paths = sorted(faces_dev.glob("*/*.png")) + [faces_dev / f"{s}.jpg" for s in STRANGERS]
    assert len(paths) == 47
    counts = {p.name: len(pipeline.detect(cv2.imread(str(p)))) for p in paths}
    assert all(n == 1 for n in counts.values()), counts


def test_faces_shipped_in_pypi_packages_are_found(pipeline, grace_hopper, astronaut) -> None:
    for name, image in (("grace_hopper", grace_hopper), ("astronaut", astronaut)):
        faces = pipeline.detect(image)
        assert len(faces) == 1, name
        face = faces[0]
        x1, _y1, x2, _y2 = face.box
        # keypoints sit inside the box, eyes above the mouth
        assert np.all((face.keypoints[:4, 0] > x1) & (face.keypoints[:4, 0] < x2)), name
        assert face.keypoints[0, 1] < face.keypoints[3, 1], name


def test_no_face_in_pictures_without_people(pipeline, faceless_images) -> None:
    found = {name: len(pipeline.detect(image)) for name, image in faceless_images.items()}
    assert found == {name: 0 for name in faceless_images}


def test_boxes_map_back_to_image_pixels_through_letterbox(pipeline, grace_hopper) -> None:
    # 600x512 -> 600x600 with the border on the left: same scale, the face moves 88 px
    # right in the image and 44 px left relative to the letterbox padding.
    height, width = grace_hopper.shape[:2]
    shift = height - width
    shifted = cv2.copyMakeBorder(grace_hopper, 0, 0, shift, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    original = pipeline.detect(grace_hopper)[0]
    moved = pipeline.detect(shifted)[0]
    tolerance = 0.03 * original.width  # a few pixels: the resampling grid moves too
    np.testing.assert_allclose(moved.box - [shift, 0, shift, 0], original.box, atol=tolerance)
    np.testing.assert_allclose(moved.keypoints - [shift, 0], original.keypoints, atol=tolerance)


def test_tiling_finds_small_faces_in_a_1080p_frame(model_store, grace_hopper) -> None:
    face = pipeline_face_crop(grace_hopper, size=44)
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    spots = [(200, 300), (900, 500), (1600, 800)]
    for x, y in spots:
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
    model, manifest = model_store.read_model("blazeface-full")
    engine = InferenceEngine("CPU")
    tiled = FaceDetector(model, manifest, engine, DetectorConfig(tile=480, retry_padded=False)).detect(frame)
    for x, y in spots:
        centre = np.array([x + face.shape[1] / 2, y + face.shape[0] / 2])
        assert any(np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre) < 20 for f in tiled), (x, y)


def pipeline_face_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Grace Hopper's head and shoulders scaled so the face is about ``size`` px wide."""
    head = image[60:420, 110:420]  # face box is ~[158,118,368,328]: keep some context
    scale = size / 210
    return cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def test_tile_regions_cover_the_frame() -> None:
    tiles = tile_regions(1920, 1080, 640)
    assert tiles[0][:2] == (0, 0)
    assert max(x + w for x, _, w, _ in tiles) == 1920
    assert max(y + h for _, y, _, h in tiles) == 1080
    assert tile_regions(640, 480, 640) == []


@pytest.mark.parametrize("device", ["CPU", "AUTO"])
def test_detector_compiles_on_configured_device(model_store, device) -> None:
    model, manifest = model_store.read_model("blazeface-short")
    detector = FaceDetector(model, manifest, InferenceEngine(device))
    assert detector.size == 128
    assert detector.detect(np.zeros((200, 300, 3), np.uint8)) == []
