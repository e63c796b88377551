"""Face quality from what the detector and aligner already give: size, sharpness, pose.

Each gate that fails adds a reason code; callers decide what to do with them
(the gallery refuses the photo, the device skips the frame for that track).

Pose from keypoints alone:
- yaw: where the nose tip sits between the eyes, -1 (at the right eye) .. 1
  (at the left eye), 0 frontal;
- pitch: eye-line-to-nose over nose-to-mouth distance (1.3 to 1.7 on the
  frontal faces of faces-dev and PyPI's sample faces; it grows as the head
  tips down and shrinks as it tips up);
- roll: the angle of the eye line (alignment removes it; reported only).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lookout.face.types import LEFT_EYE, MOUTH, NOSE_TIP, RIGHT_EYE, Face, Quality

TOO_SMALL = "too_small"
TOO_BLURRED = "too_blurred"
POSE_YAW = "pose_yaw"
POSE_PITCH = "pose_pitch"
REASONS = (TOO_SMALL, TOO_BLURRED, POSE_YAW, POSE_PITCH)


@dataclass(frozen=True)
class QualityConfig:
    min_size_px: float = 40.0
    min_blur: float = 15.0
    max_abs_yaw: float = 0.9
    pitch_range: tuple[float, float] = (0.45, 2.5)


def face_pose(face: Face) -> tuple[float, float, float]:
    """(yaw, pitch, roll in degrees) from the keypoints."""
    right, left = face.keypoints[RIGHT_EYE], face.keypoints[LEFT_EYE]
    nose, mouth = face.keypoints[NOSE_TIP], face.keypoints[MOUTH]
    eye_vec = left - right
    eye_len = float(np.linalg.norm(eye_vec)) or 1e-6
    axis = eye_vec / eye_len
    along = float(np.dot(nose - (right + left) / 2, axis))
    yaw = float(np.clip(2 * along / eye_len, -1.5, 1.5))
    normal = np.array([-axis[1], axis[0]])
    eye_to_nose = abs(float(np.dot(nose - (right + left) / 2, normal)))
    nose_to_mouth = abs(float(np.dot(mouth - nose, normal))) or 1e-6
    roll = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    return yaw, eye_to_nose / nose_to_mouth, roll


def sharpness(chip_rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the aligned chip: low means blurred."""
    grey = cv2.cvtColor(chip_rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def assess(face: Face, chip_rgb: np.ndarray, config: QualityConfig) -> Quality:
    yaw, pitch, roll = face_pose(face)
    blur = sharpness(chip_rgb)
    reasons = []
    if face.width < config.min_size_px:
        reasons.append(TOO_SMALL)
    if blur < config.min_blur:
        reasons.append(TOO_BLURRED)
    if abs(yaw) > config.max_abs_yaw:
        reasons.append(POSE_YAW)
    if not config.pitch_range[0] <= pitch <= config.pitch_range[1]:
        reasons.append(POSE_PITCH)
    return Quality(face.width, blur, yaw, pitch, roll, tuple(reasons))
