"""Failure to enrol (FTE) and failure to acquire (FTA), with their reasons.

- **FTE**: an enrolment photo that yields no usable face (none found, several
  faces so it is unclear whom to enrol, or one that fails the quality gates:
  too small, blurred, turned away). A *person* fails to enrol when none of
  their photos is usable: they cannot be recognised at all.
- **FTA**: a probe (a face the camera should have recognised, or a stranger)
  that yields no usable face. The device skips such faces, so for a mated
  probe it is a miss; the open-set FNIR counts it as one.

Reason codes are the pipeline's own: the enrolment rule's (``no_face``,
``no_face_in_box``, ``several_faces``: lookout.face.subject, the same rule as the
gallery build), ``unreadable`` and the quality reasons (``too_small``,
``too_blurred``, ``pose_yaw``, ``pose_pitch``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Capture:
    """The outcome of turning one photo (or one labelled face in a photo) into a usable face."""

    item: str  # file name, or file#box for a labelled face
    person: str
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons


def failure_rate(captures: Iterable[Capture]) -> dict:
    captures = list(captures)
    failed = [c for c in captures if not c.ok]
    reasons = Counter(r for c in failed for r in c.reasons)
    return {
        "attempts": len(captures),
        "failures": len(failed),
        "rate": len(failed) / len(captures) if captures else None,
        "reasons": dict(sorted(reasons.items())),
        "failed": [{"item": c.item, "person": c.person, "reasons": list(c.reasons)} for c in failed],
    }


def enrolment_figures(captures: Iterable[Capture]) -> dict:
    """FTE per photo and per person."""
    captures = list(captures)
    people: dict[str, bool] = {}
    for c in captures:
        people[c.person] = people.get(c.person, False) or c.ok
    unenrolled = sorted(p for p, ok in people.items() if not ok)
    return {
        "photos": failure_rate(captures),
        "people": {
            "attempts": len(people),
            "failures": len(unenrolled),
            "rate": len(unenrolled) / len(people) if people else None,
            "failed": unenrolled,
        },
    }
