"""Gallery audit: look-alikes across people, disagreement within a person.

- ``lookalikes``: pairs of different people with two photos closer than the
  threshold: a duplicate record, or two people a device could confuse.
- ``inconsistent``: people with a photo that matches none of their other photos
  at the threshold: possibly two people under one id, or a bad photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lookout.gallery.reader import Gallery


@dataclass
class AuditReport:
    threshold: float
    lookalikes: list[dict] = field(default_factory=list)
    inconsistent: list[dict] = field(default_factory=list)
    persons: int = 0
    photos: int = 0

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "persons": self.persons,
            "photos": self.photos,
            "lookalikes": self.lookalikes,
            "inconsistent": self.inconsistent,
        }

    def lines(self) -> list[str]:
        out = [
            f"audit of {self.persons} people, {self.photos} photos at threshold {self.threshold:.3f}: "
            f"{len(self.lookalikes)} look-alike pair(s), {len(self.inconsistent)} inconsistent people"
        ]
        for p in self.lookalikes:
            out.append(f"  look-alike: {p['a']} ~ {p['b']} score {p['score']:.3f} ({p['photo_a']} / {p['photo_b']})")
        for p in self.inconsistent:
            out.append(
                f"  inconsistent: {p['person_id']} photo {p['photo_id']} best match among own photos "
                f"{p['best_own']:.3f}"
            )
        return out


def audit_gallery(gallery: Gallery, threshold: float | None = None, neighbours: int = 20) -> AuditReport:
    threshold = gallery.threshold if threshold is None else threshold
    by_label = gallery.photos_by_label()
    labels = sorted(by_label)
    report = AuditReport(threshold, persons=gallery.count_persons, photos=len(labels))
    if not labels:
        return report
    vectors = gallery.index.get(labels)
    found, scores = gallery.index.search(vectors, min(neighbours + 1, len(labels)))
    pairs: dict[tuple[str, str], dict] = {}
    for label, row_labels, row_scores in zip(labels, found, scores):
        photo_a, person_a = by_label[label]
        for other, score in zip(row_labels, row_scores):
            hit = by_label.get(int(other))
            if hit is None or hit[1] == person_a or score < threshold:
                continue
            first, second = sorted((person_a, hit[1]))
            key = (first, second)
            if key not in pairs or score > pairs[key]["score"]:
                a_first = key[0] == person_a
                pairs[key] = {
                    "a": key[0],
                    "b": key[1],
                    "score": round(float(score), 4),
                    "photo_a": photo_a if a_first else hit[0],
                    "photo_b": hit[0] if a_first else photo_a,
                }
    report.lookalikes = sorted(pairs.values(), key=lambda p: -p["score"])
    per_person: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        per_person.setdefault(by_label[label][1], []).append(i)
    for person_id, rows in sorted(per_person.items()):
        if len(rows) < 2:
            continue
        sims = vectors[rows] @ vectors[rows].T
        np.fill_diagonal(sims, -1.0)
        for i, row in enumerate(rows):
            best = float(sims[i].max())
            if best < threshold:
                report.inconsistent.append(
                    {"person_id": person_id, "photo_id": by_label[labels[row]][0], "best_own": round(best, 4)}
                )
    return report
