"""The enrolment rule, defined once: which face of a photo is its subject, and which faces are refused.

Used by ``gallery build``/``update`` and by ``lookout eval``, so evaluation
measures the gallery that build makes.

- **Subject.** With a box in the record, the detected face that overlaps it
  most (IoU at least ``BOX_MIN_IOU``). Without one, the only face; with
  several, the largest when its box area is at least ``DOMINANT_AREA`` times
  the next one's (the person the photo is of, not a bystander); otherwise
  nobody: ``several_faces``.
- **Refused faces.** Only faces too small to carry identity (``too_small``).
  Pose (yaw, pitch) and sharpness are measured and recorded with the photo,
  not refused: on faces-scale (299 people, 1,715 in-the-wild photos, open-set,
  FPIR held at 1%) refusing them failed 8.9% of photos (pose 137, blur 7 of
  1,721 faces) and raised the FNIR at FPIR 1% from 0.20 to 0.36 (one photo
  enrolled per person; 0.13 against 0.33 with two). A turned face enrolled is
  a weaker template; a person not enrolled is a certain miss. See
  docs/evaluation.md.
"""

from __future__ import annotations

import numpy as np

from lookout.face.detector import iou
from lookout.face.quality import TOO_SMALL
from lookout.face.types import Face

ENROLMENT_RULE = "subject-v2"  # part of enrolment cache keys: a changed rule re-enrols
DOMINANT_AREA = 2.0
BOX_MIN_IOU = 0.3
NO_FACE = "no_face"
SEVERAL_FACES = "several_faces"
NO_FACE_IN_BOX = "no_face_in_box"
ENROLMENT_REFUSES = frozenset({TOO_SMALL})  # quality reasons that keep a face out of a gallery


def _area(face: Face) -> float:
    return float(face.box[2] - face.box[0]) * float(face.box[3] - face.box[1])


def choose_subject(
    faces: list[Face], box: tuple[float, ...] | list[float] | None = None
) -> tuple[Face | None, str, str]:
    """(subject face or None, reason code when None, detail) for one photo's detected faces."""
    if not faces:
        return None, NO_FACE, "no face detected"
    if box is not None:
        overlaps = iou(np.asarray(box, np.float32), np.stack([f.box for f in faces]))
        best = int(np.argmax(overlaps))
        if overlaps[best] < BOX_MIN_IOU:
            return (
                None,
                NO_FACE_IN_BOX,
                f"{len(faces)} face(s) found, none overlaps the record's box (best IoU {overlaps[best]:.2f})",
            )
        return faces[best], "", ""
    if len(faces) == 1:
        return faces[0], "", ""
    by_area = sorted(faces, key=_area, reverse=True)
    ratio = _area(by_area[0]) / max(_area(by_area[1]), 1e-6)
    if ratio >= DOMINANT_AREA:
        return by_area[0], "", ""
    return (
        None,
        SEVERAL_FACES,
        f"{len(faces)} faces, the largest only {ratio:.1f}x the next (needs {DOMINANT_AREA:g}x) and no box in the record",
    )


def refusals(reasons: tuple[str, ...]) -> tuple[str, ...]:
    """The quality reasons among ``reasons`` that refuse enrolment (the others are recorded only)."""
    return tuple(r for r in reasons if r in ENROLMENT_REFUSES)
