"""BlazeFace on OpenVINO: any image size in, faces with 6 keypoints in image pixels out.

The frame is letterboxed into the model's square input (aspect kept, black
borders). Raw outputs are decoded against the SSD anchors, thresholded and
merged by weighted NMS (MediaPipe's blending, which steadies the keypoints).
Two options extend what a 192x192 model sees:

- ``retry_padded``: a face that fills the whole image (an ID-photo crop) is
  too large for the model; when nothing is found we look again with the image
  shrunk inside a wide border.
- ``tile``: small faces in big frames (1080p, faces ~40 px) vanish at 192 px,
  so overlapping tiles of ``tile`` pixels are searched as well.

The detector is a ``Stage`` (lookout.face.stage): ``run``/``detect`` for photos,
``submit``/``collect`` for a stream's frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import openvino as ov

from lookout.face.anchors import anchor_centres
from lookout.face.engine import InferenceEngine
from lookout.face.stage import Outputs, Stage
from lookout.face.types import Face
from lookout.model_store.manifest import ModelManifest

# Borders tried in turn (each side, as a share of the longer side) when nothing is found.
# Measured on the 40 tight crops of faces-dev: each pad alone misses one or two, in turn none.
PAD_FRACTIONS = (0.75, 0.5)
TILE_OVERLAP = 0.25


@dataclass(frozen=True)
class DetectorConfig:
    score_threshold: float | None = None  # None: the model's own default from its manifest
    nms_iou: float = 0.3
    retry_padded: bool = True
    tile: int = 0  # tile size in pixels; 0 disables tiling
    max_faces: int = 64


@dataclass(frozen=True)
class Letterbox:
    """How an image region was placed in the model input, to map results back."""

    scale: float  # model pixels per image pixel
    pad_x: float
    pad_y: float
    offset_x: float = 0.0  # where the region starts in the original image
    offset_y: float = 0.0

    def to_image(self, points: np.ndarray, size: int) -> np.ndarray:
        """Map normalised model coordinates (..., 2) to original image pixels."""
        xy = points * size
        xy[..., 0] = (xy[..., 0] - self.pad_x) / self.scale + self.offset_x
        xy[..., 1] = (xy[..., 1] - self.pad_y) / self.scale + self.offset_y
        return xy


@dataclass(frozen=True)
class PaddedImage:
    """An image looked at again shrunk inside a wide black border (``pad``: each side, as a share of
    its longer side), for a face that fills the whole image and is too large for the model."""

    image: np.ndarray
    pad: float


DetectorInput = np.ndarray | PaddedImage


class FaceDetector(Stage[DetectorInput, list[Face], Letterbox]):
    """BlazeFace as a stage: an image (and its tiles) in, faces in image pixels out."""

    def __init__(
        self,
        model: ov.Model,
        manifest: ModelManifest,
        engine: InferenceEngine,
        config: DetectorConfig | None = None,
        jobs: int = 2,
    ) -> None:
        super().__init__(engine.compile(model, "LATENCY"), jobs)
        self.manifest = manifest
        self.config = config or DetectorConfig()
        self.size = manifest.input_size[0]
        self.anchors = anchor_centres(manifest.extra["anchors"])
        self.threshold = self.config.score_threshold or float(manifest.extra["score_threshold"])

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in a BGR uint8 image, best first; with ``retry_padded``, a photo where nothing is
        found is looked at again inside a border (a stream's frames go through ``submit``: no retry)."""
        faces = self.run(image)
        for pad in PAD_FRACTIONS if self.config.retry_padded else ():
            if faces:
                break
            faces = self.run(PaddedImage(image, pad))
        return faces

    def regions(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The (x, y, w, h) parts of a frame that get a model pass: the whole frame, plus tiles if configured."""
        return [(0, 0, width, height), *tile_regions(width, height, self.config.tile)]

    def prepare(self, item: DetectorInput) -> list[tuple[np.ndarray, Letterbox]]:
        if isinstance(item, PaddedImage):
            border = int(item.pad * max(item.image.shape[:2]))
            padded = cv2.copyMakeBorder(
                item.image, border, border, border, border, cv2.BORDER_CONSTANT, value=(0, 0, 0)
            )
            return [self.letterbox(padded, offset=(-border, -border), exact=True)]
        return [
            self.letterbox(item[y : y + h, x : x + w], offset=(x, y))
            for x, y, w, h in self.regions(item.shape[1], item.shape[0])
        ]

    def decode(self, outputs: list[Outputs], contexts: list[Letterbox]) -> list[Face]:
        found: list[Face] = []
        for (regressors, logits), box in zip(outputs, contexts):
            found += self._faces(regressors, logits, box)
        return merge_faces(found, self.config.nms_iou, self.config.max_faces)

    def letterbox(
        self, image: np.ndarray, offset: tuple[float, float] = (0, 0), exact: bool = False
    ) -> tuple[np.ndarray, Letterbox]:
        """Letterbox a BGR image into a (1, S, S, 3) uint8 tensor.

        ``exact`` shrinks with a true area average (slower; for photos, where a
        millisecond does not matter and keypoints on turned heads do)."""
        h, w = image.shape[:2]
        scale = self.size / max(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        resized = shrink(image, (new_w, new_h), exact)
        tensor = np.zeros((1, self.size, self.size, 3), np.uint8)
        pad_x, pad_y = (self.size - new_w) // 2, (self.size - new_h) // 2
        tensor[0, pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
        return tensor, Letterbox(scale, pad_x, pad_y, offset[0], offset[1])

    def _faces(self, regressors: np.ndarray, logits: np.ndarray, box: Letterbox) -> list[Face]:
        """Raw (regressors, scores) of one request -> faces in image pixels (not yet merged)."""
        regressors, logits = regressors.reshape(-1, 16), logits.reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))  # float32-safe clip
        keep = np.flatnonzero(scores >= self.threshold)
        if keep.size == 0:
            return []
        raw, anchors = regressors[keep] / self.size, self.anchors[keep]
        centre = raw[:, 0:2] + anchors
        half = raw[:, 2:4] / 2
        corners = box.to_image(np.stack([centre - half, centre + half], axis=1), self.size).reshape(-1, 4)
        keypoints = box.to_image(raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :], self.size)
        return [
            Face(corners[i].astype(np.float32), float(scores[k]), keypoints[i].astype(np.float32))
            for i, k in enumerate(keep)
        ]


def shrink(image: np.ndarray, size: tuple[int, int], exact: bool = False) -> np.ndarray:
    """Resize to ``size`` (w, h) with little aliasing, fast.

    Shrinking: bilinear to twice the size, then a 2x2 area average. Plain
    ``INTER_AREA`` at non-integer ratios cost 1.5-2.6 ms a frame here (as much
    as the model) and plain bilinear aliases, moving keypoints 4x as much
    (mean 0.4% of the face width against INTER_AREA, 0.1% this way) and
    turning borderline-frontal faces into pose rejections. This way: 0.24 ms
    for 1280x720.
    """
    width, height = size
    if width >= image.shape[1]:
        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    if exact:
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    double = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(double, size, interpolation=cv2.INTER_AREA)


def tile_regions(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Overlapping square tiles (x, y, w, h) covering the image; none if the image fits one tile."""
    if tile <= 0 or (width <= tile and height <= tile):
        return []
    step = max(1, int(tile * (1 - TILE_OVERLAP)))
    xs = sorted({min(x, max(0, width - tile)) for x in range(0, max(1, width - tile + step), step)})
    ys = sorted({min(y, max(0, height - tile)) for y in range(0, max(1, height - tile + step), step)})
    return [(x, y, min(tile, width), min(tile, height)) for y in ys for x in xs]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one [x1,y1,x2,y2] box against (N, 4) boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    overlap: np.ndarray = inter / np.maximum(area + areas - inter, 1e-9)
    return overlap


def merge_faces(faces: list[Face], iou_threshold: float, max_faces: int) -> list[Face]:
    """Weighted NMS: overlapping detections are blended by score into one face."""
    if not faces:
        return []
    order = sorted(faces, key=lambda f: f.score, reverse=True)
    boxes = np.stack([f.box for f in order])
    points = np.stack([f.keypoints for f in order])
    scores = np.array([f.score for f in order], np.float32)
    alive = np.ones(len(order), bool)
    merged: list[Face] = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        group = alive & (iou(boxes[i], boxes) >= iou_threshold)
        group[i] = True
        alive &= ~group
        weights = scores[group] / scores[group].sum()
        merged.append(
            Face(
                box=(boxes[group] * weights[:, None]).sum(0).astype(np.float32),
                score=float(scores[i]),
                keypoints=(points[group] * weights[:, None, None]).sum(0).astype(np.float32),
            )
        )
        if len(merged) == max_faces:
            break
    return merged
