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

``prepare``/``decode`` are public so the device can run the request itself
(asynchronously) while ``detect`` stays the one-call form.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import openvino as ov

from lookout.face.anchors import anchor_centres
from lookout.face.engine import InferenceEngine
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


class FaceDetector:
    def __init__(
        self, model: ov.Model, manifest: ModelManifest, engine: InferenceEngine, config: DetectorConfig | None = None
    ) -> None:
        self.manifest = manifest
        self.config = config or DetectorConfig()
        self.size = manifest.input_size[0]
        self.anchors = anchor_centres(manifest.extra["anchors"])
        self.threshold = self.config.score_threshold or float(manifest.extra["score_threshold"])
        self.compiled = engine.compile(model, "LATENCY")
        self._request = self.compiled.create_infer_request()

    # -- one-call form -------------------------------------------------------------
    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in a BGR uint8 image, best first."""
        faces = self._detect_regions(image)
        for pad in PAD_FRACTIONS if self.config.retry_padded else ():
            if faces:
                break
            faces = self._detect_padded(image, pad)
        return faces

    def regions(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The (x, y, w, h) parts of a frame that get a model pass: the whole frame, plus tiles if configured."""
        return [(0, 0, width, height), *tile_regions(width, height, self.config.tile)]

    def _detect_regions(self, image: np.ndarray) -> list[Face]:
        found: list[Face] = []
        for x, y, w, h in self.regions(image.shape[1], image.shape[0]):
            tensor, box = self.prepare(image[y : y + h, x : x + w], offset=(x, y))
            found += self.decode(self.infer(tensor), box, merge=False)
        return merge_faces(found, self.config.nms_iou, self.config.max_faces)

    def _detect_padded(self, image: np.ndarray, pad: float) -> list[Face]:
        border = int(pad * max(image.shape[:2]))
        padded = cv2.copyMakeBorder(image, border, border, border, border, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        tensor, box = self.prepare(padded, offset=(-border, -border), exact=True)
        return self.decode(self.infer(tensor), box)

    def infer(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._request.infer({0: tensor})
        return self._request.get_output_tensor(0).data.copy(), self._request.get_output_tensor(1).data.copy()

    # -- split form, for asynchronous callers ------------------------------------------
    def prepare(
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

    def decode(self, outputs: tuple[np.ndarray, np.ndarray], box: Letterbox, merge: bool = True) -> list[Face]:
        """Turn raw (regressors, scores) into faces in image pixels."""
        regressors, logits = outputs[0].reshape(-1, 16), outputs[1].reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))  # float32-safe clip
        keep = np.flatnonzero(scores >= self.threshold)
        if keep.size == 0:
            return []
        raw, anchors = regressors[keep] / self.size, self.anchors[keep]
        centre = raw[:, 0:2] + anchors
        half = raw[:, 2:4] / 2
        corners = box.to_image(np.stack([centre - half, centre + half], axis=1), self.size).reshape(-1, 4)
        keypoints = box.to_image(raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :], self.size)
        faces = [
            Face(corners[i].astype(np.float32), float(scores[k]), keypoints[i].astype(np.float32))
            for i, k in enumerate(keep)
        ]
        return merge_faces(faces, self.config.nms_iou, self.config.max_faces) if merge else faces


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
    return inter / np.maximum(area + areas - inter, 1e-9)


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
