"""Search by photo (`lookout search`): who is this face? The OpenOversight flow.

Each face in the image (or only the one in ``box``) is embedded and searched;
a face whose best candidate is under the threshold is "no match". Faces that
fail the quality gates are still searched, and flagged, since a person asking
"who is this officer?" has only the photo they have.

Many images in one run (``search_paths``): files and folders (searched
recursively for images), models and gallery loaded once; an unreadable image
is one error for that image and the run goes on. An image's decision is the
face with the best top score that clears the threshold (a bystander can be the
match: every face is searched).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookout.errors import InputError
from lookout.face.detector import iou
from lookout.face.image_io import MAX_PIXELS, read_image
from lookout.face.pipeline import FacePipeline
from lookout.face.quality import assess
from lookout.face.types import Face, Quality
from lookout.gallery.reader import Candidate, GalleryReader
from lookout.gallery.threshold import threshold_problem

BOX_MIN_IOU = 0.3


@dataclass
class FaceResult:
    face: Face
    quality: Quality
    candidates: list[Candidate]
    threshold: float

    @property
    def match(self) -> Candidate | None:
        return self.candidates[0] if self.candidates and self.candidates[0].score >= self.threshold else None

    def to_dict(self) -> dict[str, Any]:
        match = self.match
        return {
            "box": [round(float(v), 1) for v in self.face.box],
            "quality": self.quality.to_dict(),
            "match": match.person_id if match else None,
            "decision": {
                "match": match is not None,
                "person_id": match.person_id if match else None,
                "name": match.name if match else None,
                "score": round(self.candidates[0].score, 4) if self.candidates else None,
                "threshold": self.threshold,
            },
            "candidates": [
                {
                    "person_id": c.person_id,
                    "name": c.name,
                    "score": round(c.score, 4),
                    "photo_id": c.photo_id,
                    "clears_threshold": c.score >= self.threshold,
                }
                for c in self.candidates
            ],
        }


def _faces_in_box(image: np.ndarray, pipeline: FacePipeline, box: tuple[float, float, float, float]) -> Face:
    target = np.asarray(box, np.float32)
    faces = pipeline.detect(image)
    if faces:
        overlaps = iou(target, np.stack([f.box for f in faces]))
        if overlaps.max() >= BOX_MIN_IOU:
            return faces[int(np.argmax(overlaps))]
    # look again in a crop around the box: the face may be small in a large frame
    w, h = target[2] - target[0], target[3] - target[1]
    x1, y1 = int(max(0, target[0] - w)), int(max(0, target[1] - h))
    x2, y2 = int(min(image.shape[1], target[2] + w)), int(min(image.shape[0], target[3] + h))
    if x2 - x1 < 8 or y2 - y1 < 8:
        raise InputError(f"box {','.join(f'{v:g}' for v in box)}", "outside the image")
    offset = np.array([x1, y1, x1, y1], np.float32)
    crop_faces = [Face(f.box + offset, f.score, f.keypoints + offset[:2]) for f in pipeline.detect(image[y1:y2, x1:x2])]
    if crop_faces:
        overlaps = iou(target, np.stack([f.box for f in crop_faces]))
        if overlaps.max() >= BOX_MIN_IOU:
            return crop_faces[int(np.argmax(overlaps))]
    raise InputError(f"box {','.join(f'{v:g}' for v in box)}", "no face found in this box")


def search_image(
    image: np.ndarray,
    pipeline: FacePipeline,
    gallery: GalleryReader,
    box: tuple[float, float, float, float] | None = None,
    top: int = 5,
    threshold: float | None = None,
) -> list[FaceResult]:
    """Every face of ``image`` (or the one in ``box``) with its top candidates and the threshold they face.
    The decision is the best candidate's, so it does not depend on ``top`` (how many are shown)."""
    if top < 1:
        raise InputError(f"top {top}", "at least one candidate per face is searched (the decision is the best one's)")
    if threshold is not None and (problem := threshold_problem(threshold)):
        raise InputError(f"threshold {threshold}", problem)
    if pipeline.embedder.digest != gallery.model_digest:
        raise InputError(
            f"gallery version {gallery.version}",
            f"gallery built with {gallery.model_name}, the pipeline runs "
            f"{pipeline.embedder.name}: scores would mean nothing",
        )
    faces = [_faces_in_box(image, pipeline, box)] if box is not None else pipeline.detect(image)
    if not faces:
        return []
    chips = pipeline.align(image, faces)
    vectors = pipeline.embed(chips)
    threshold = gallery.threshold if threshold is None else threshold
    results = gallery.search(vectors, k=top)
    return [
        FaceResult(f, assess(f, chip, pipeline.quality_config), cands, threshold)
        for f, chip, cands in zip(faces, chips, results)
    ]


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def expand_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given; folders as every image file under them, sorted."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


@dataclass
class ImageResult:
    """One image's search: its faces, or the one-line reason it could not be searched."""

    path: Path
    faces: list[FaceResult]
    error: str | None = None

    @property
    def match(self) -> FaceResult | None:
        """The face whose best candidate clears the threshold with the highest score, if any."""
        matched = [f for f in self.faces if f.match is not None]
        return max(matched, key=lambda f: f.candidates[0].score) if matched else None

    def to_dict(self) -> dict[str, Any]:
        best = self.match
        doc: dict[str, Any] = {"path": str(self.path)}
        if self.error is not None:
            doc["error"] = self.error
            return doc
        doc["faces"] = [f.to_dict() for f in self.faces]
        doc["decision"] = {
            "match": best is not None,
            "person_id": best.match.person_id if best and best.match else None,
            "name": best.match.name if best and best.match else None,
            "score": round(best.candidates[0].score, 4) if best else None,
            "face": next(i for i, f in enumerate(self.faces) if f is best) if best else None,
        }
        return doc


def search_paths(
    paths: Iterable[Path],
    pipeline: FacePipeline,
    gallery: GalleryReader,
    top: int = 5,
    threshold: float | None = None,
    box: tuple[float, float, float, float] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Iterator[ImageResult]:
    """Search every image of ``paths`` (files or folders) with one pipeline and one gallery; an image over
    ``max_pixels`` is refused from its header, before decoding (one error line, the run goes on)."""
    for path in expand_paths(paths):
        try:
            image = read_image(path, max_pixels)
            yield ImageResult(path, search_image(image, pipeline, gallery, box=box, top=top, threshold=threshold))
        except InputError as err:
            if box is not None or "scores would mean nothing" in err.reason:
                raise  # a wrong box or another model's gallery: the run itself is wrong
            yield ImageResult(path, [], str(err))
