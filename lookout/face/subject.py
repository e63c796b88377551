"""Which face of a photo is its subject: the enrolment rule, defined once.

The gallery build (``lookout.sync.enrol``) and the evaluation (``lookout.evaluation.datasets``)
both call ``choose_subject``, so an evaluation measures the gallery a build makes. In turn:

1. the record gives a box: the detected face that overlaps it most (IoU at least
   ``min_box_iou``), else refuse (``no_face_in_box``);
2. no face: refuse (``no_face``);
3. one face: that face;
4. several faces: as ``several_faces`` says: ``dominant`` (the default: the largest
   face when its area is at least ``dominant_ratio`` times the next one's, the person the
   photo is of rather than a bystander; else refuse), ``refuse`` (the record does not
   say whom to enrol), or ``largest`` (always the largest: for a probe, a search rather
   than an enrolment).

Then quality: only the reasons in ``refuse_quality`` (default: ``too_small``) keep the
subject out of a gallery; pose and sharpness are measured and recorded with the photo,
not refused. On faces-scale (299 people, 1,715 in-the-wild photos, open-set, FPIR held at
1%) refusing them failed 8.9% of photos (pose 137, blur 7 of 1,721 faces) and raised the
FNIR at FPIR 1% from 0.20 to 0.36 with one photo enrolled per person (0.13 against 0.33
with two): a turned face enrolled is a weaker template, a person not enrolled is a
certain miss. See docs/evaluation.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lookout.face.detector import iou
from lookout.face.quality import TOO_SMALL
from lookout.face.types import Face

NO_FACE = "no_face"
NO_FACE_IN_BOX = "no_face_in_box"
SEVERAL_FACES = "several_faces"

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class SubjectRule:
    """How to pick a photo's subject among the faces found in it (see the module docstring)."""

    min_box_iou: float = 0.3
    several_faces: Literal["refuse", "dominant", "largest"] = "dominant"
    dominant_ratio: float = 2.0
    refuse_quality: tuple[str, ...] = (TOO_SMALL,)  # quality reasons that keep a face out of a gallery

    def refusals(self, reasons: tuple[str, ...]) -> tuple[str, ...]:
        """The quality reasons among ``reasons`` that refuse enrolment (the others are recorded only)."""
        return tuple(r for r in reasons if r in self.refuse_quality)


@dataclass(frozen=True)
class SubjectChoice:
    """The subject's face, or the reason code and a sentence saying why there is none."""

    face: Face | None
    reason: str | None = None
    detail: str = ""


def face_area(face: Face) -> float:
    return float(face.box[2] - face.box[0]) * float(face.box[3] - face.box[1])


def face_in_box(faces: list[Face], box: Box, min_iou: float) -> tuple[Face | None, float]:
    """The face that overlaps ``box`` most, if at least ``min_iou``; and the best overlap found."""
    if not faces:
        return None, 0.0
    overlaps = iou(np.asarray(box, np.float32), np.stack([f.box for f in faces]))
    best = int(np.argmax(overlaps))
    return (faces[best] if overlaps[best] >= min_iou else None), float(overlaps[best])


def choose_subject(faces: list[Face], box: Box | None = None, rule: SubjectRule | None = None) -> SubjectChoice:
    rule = rule or SubjectRule()
    if not faces:
        return SubjectChoice(None, NO_FACE, "no face detected")
    if box is not None:
        face, overlap = face_in_box(faces, box, rule.min_box_iou)
        if face is None:
            return SubjectChoice(
                None,
                NO_FACE_IN_BOX,
                f"{len(faces)} face(s) found, none overlaps the record's box (best IoU {overlap:.2f})",
            )
        return SubjectChoice(face)
    if len(faces) == 1:
        return SubjectChoice(faces[0])
    by_area = sorted(faces, key=face_area, reverse=True)
    if rule.several_faces == "largest":
        return SubjectChoice(by_area[0])
    ratio = face_area(by_area[0]) / max(face_area(by_area[1]), 1e-9)
    if rule.several_faces == "dominant" and ratio >= rule.dominant_ratio:
        return SubjectChoice(by_area[0])
    detail = f"{len(faces)} faces and no box in the record to say which"
    if rule.several_faces == "dominant":
        detail += f" (the largest is {ratio:.1f}x the next, under {rule.dominant_ratio:g}x)"
    return SubjectChoice(None, SEVERAL_FACES, detail)
