"""Align a face to its embedder's canonical chip by a similarity transform.

Four BlazeFace keypoints (both eyes, nose tip, mouth centre) are fitted in the
least-squares sense (Umeyama) to the template the embedder's manifest gives;
the ears are left out, they are unreliable once the head turns. A similarity
(rotation, uniform scale, shift) keeps the face's proportions, which carry
identity. Outside the image the chip is black: replicated edges (streaks) cost
FaceNet a lot on tight ID-photo crops (faces-dev leave-one-out rank-1 0.85 with
replicated borders, 1.00 with black; see docs/models.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from lookout.face.types import Face

ALIGN_POINTS = slice(0, 4)  # right eye, left eye, nose tip, mouth


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the similarity that best maps ``src`` (N,2) onto ``dst`` (N,2)."""
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ d @ vt
    scale = (s * np.diag(d)).sum() / src_c.var(0).sum()
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(image: np.ndarray, face: Face, template: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp the face to a ``size`` (w, h) chip, RGB uint8, keypoints on ``template``."""
    matrix = similarity_transform(face.keypoints[ALIGN_POINTS], template)
    chip = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return cv2.cvtColor(chip, cv2.COLOR_BGR2RGB)


def align_faces(image: np.ndarray, faces: list[Face], template: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Stack of aligned chips (N, h, w, 3) RGB uint8."""
    if not faces:
        return np.zeros((0, size[1], size[0], 3), np.uint8)
    return np.stack([align_face(image, f, template, size) for f in faces])
