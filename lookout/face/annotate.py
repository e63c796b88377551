"""Draw detected faces (box, keypoints, score, quality) on an image for people to look at."""

from __future__ import annotations

import cv2
import numpy as np

from lookout.face.types import AnalyzedFace

GOOD = (60, 200, 60)
POOR = (0, 165, 255)


def draw_faces(image: np.ndarray, faces: list[AnalyzedFace], labels: list[str] | None = None) -> np.ndarray:
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 500))
    for i, analyzed in enumerate(faces):
        face, quality = analyzed.face, analyzed.quality
        colour = GOOD if quality.ok else POOR
        x1, y1, x2, y2 = (round(v) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        for x, y in face.keypoints:
            cv2.circle(out, (int(x), int(y)), thickness + 1, (255, 255, 0), -1)
        text = labels[i] if labels else f"{face.score:.2f}" + ("" if quality.ok else " " + ",".join(quality.reasons))
        cv2.putText(out, text, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, colour, thickness)
    return out
