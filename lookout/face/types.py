"""What the face pipeline hands around."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# BlazeFace keypoint order. "Right" is the subject's right: on the image's left side.
RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH, RIGHT_EAR, LEFT_EAR = range(6)
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class Face:
    """A detected face in image pixels."""

    box: np.ndarray  # float32 [x1, y1, x2, y2]
    score: float
    keypoints: np.ndarray  # float32 (6, 2), KEYPOINT_NAMES order

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 4),
            "keypoints": {
                n: [round(float(x), 1), round(float(y), 1)] for n, (x, y) in zip(KEYPOINT_NAMES, self.keypoints)
            },
        }


@dataclass(frozen=True)
class Quality:
    """Face quality measures and the reasons (if any) it fails the gates."""

    size_px: float  # box width in image pixels
    blur: float  # variance of the Laplacian on the aligned grey chip (higher is sharper)
    yaw: float  # -1..1, 0 frontal (nose between the eyes)
    pitch: float  # eyes-to-nose over nose-to-mouth distance, 1.3-1.7 frontal
    roll_deg: float
    reasons: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reasons": list(self.reasons),
            "size_px": round(self.size_px, 1),
            "blur": round(self.blur, 1),
            "yaw": round(self.yaw, 3),
            "pitch": round(self.pitch, 3),
            "roll_deg": round(self.roll_deg, 1),
        }


@dataclass(frozen=True)
class AnalyzedFace:
    face: Face
    quality: Quality
    embedding: np.ndarray | None  # L2-normalised float32, None when not embedded
