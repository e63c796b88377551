"""1:1 verification on a pairs file: "are these two photos the same person?".

Pairs file: CSV with header ``image_a,image_b,same`` (same: 1/0, true/false,
yes/no), paths relative to the file. Optional ``person_a,person_b`` columns
name the people (for confidence intervals by person); otherwise each image's
parent folder is taken as its person.

Each image contributes its largest detected face. A pair where either image
has no usable face is a *failure to acquire*: counted and reported, and left
out of the rates below (which are therefore rates over compared pairs).

- **ROC**: true-accept rate (TAR, genuine pairs accepted) against false-accept
  rate (FAR, impostor pairs accepted) over every threshold.
- **accuracy at the best threshold**: the share of pairs decided right at the
  threshold that does best on *this* data. Optimistic (the threshold is fitted
  to the data it is scored on), but the usual headline figure.
- **TAR at FAR = 1e-2, 1e-3**: at the lowest threshold that accepts at most that
  share of impostor pairs; needs at least 1/FAR impostor pairs.
- **EER**: where FAR equals the false-reject rate.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookout.errors import InputError
from lookout.evaluation import rates
from lookout.evaluation.bootstrap import bootstrap_ci, trust

FAR_TARGETS = (1e-2, 1e-3)
_TRUE = {"1", "true", "yes", "same", "y", "t"}
_FALSE = {"0", "false", "no", "different", "n", "f"}


@dataclass(frozen=True)
class Pair:
    image_a: Path
    image_b: Path
    same: bool
    person_a: str
    person_b: str


def read_pairs(path: Path) -> list[Pair]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(str(path), err.strerror or str(err)) from None
    reader = csv.DictReader(text.splitlines())
    missing = {"image_a", "image_b", "same"} - set(reader.fieldnames or [])
    if missing:
        raise InputError(str(path), f"pairs file needs the columns image_a,image_b,same (missing {sorted(missing)})")
    pairs = []
    for line, row in enumerate(reader, start=2):
        flag = (row["same"] or "").strip().lower()
        if flag not in _TRUE | _FALSE:
            raise InputError(f"{path}:{line}", f"'same' must be 1/0, true/false or yes/no, not {row['same']!r}")
        a, b = path.parent / row["image_a"].strip(), path.parent / row["image_b"].strip()
        pairs.append(
            Pair(
                a,
                b,
                flag in _TRUE,
                (row.get("person_a") or a.parent.name).strip(),
                (row.get("person_b") or b.parent.name).strip(),
            )
        )
    if not pairs:
        raise InputError(str(path), "no pairs")
    return pairs


def write_pairs(path: Path, rows: Sequence[tuple[str, str, bool]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_a", "image_b", "same"])
        for a, b, same in rows:
            w.writerow([a, b, int(same)])


def roc(scores: np.ndarray, same: np.ndarray) -> dict:
    """TAR and FAR at every distinct score as threshold (high to low)."""
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    thresholds = rates.candidate_thresholds(scores)
    gen, imp = scores[same], scores[~same]
    return {
        "threshold": thresholds.tolist(),
        "tar": [rates.accepted_rate(gen, t) for t in thresholds],
        "far": [rates.accepted_rate(imp, t) for t in thresholds],
    }


def best_accuracy(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(accuracy, threshold): the best share of correct decisions over all thresholds.

    Ties go to the highest threshold (the more cautious one).
    """
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    best = (-1.0, math.inf)
    for t in rates.candidate_thresholds(scores):
        acc = float(np.mean((scores >= t) == same))
        if acc > best[0]:
            best = (acc, t)
    return best


def eer(scores: np.ndarray, same: np.ndarray) -> float | None:
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    gen, imp = scores[same], scores[~same]
    if not gen.size or not imp.size:
        return None
    gaps = [
        (
            abs(rates.accepted_rate(imp, t) - (1 - rates.accepted_rate(gen, t))),
            (rates.accepted_rate(imp, t) + 1 - rates.accepted_rate(gen, t)) / 2,
        )
        for t in rates.candidate_thresholds(scores)
    ]
    return float(min(gaps)[1])


def tar_at_far(scores: np.ndarray, same: np.ndarray, target: float) -> dict:
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    gen, imp = scores[same], scores[~same]
    if not rates.measurable(imp.size, target):
        return {
            "target_far": target,
            "measurable": False,
            "reason": f"needs at least {math.ceil(1 / target)} impostor pairs to resolve a FAR of {target:g}; "
            f"there are {imp.size}",
        }
    t = rates.threshold_at_rate(imp, target)
    false_rejects = int((gen < t).sum())
    return {
        "target_far": target,
        "measurable": True,
        "threshold": t,
        "tar": rates.accepted_rate(gen, t),
        "far": rates.accepted_rate(imp, t),
        "frr_trust": trust(false_rejects, int(gen.size)),
        "far_trust": trust(int((imp >= t).sum()), int(imp.size)),
    }


def evaluate(
    scores: np.ndarray,
    same: np.ndarray,
    people: Sequence[str] | None = None,
    failures: int = 0,
    targets: Sequence[float] = FAR_TARGETS,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Every verification figure for compared pairs; ``people`` (one id per pair) for the intervals."""
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    acc, t_best = best_accuracy(scores, same)
    doc = {
        "pairs": int(scores.size) + failures,
        "compared_pairs": int(scores.size),
        "genuine_pairs": int(same.sum()),
        "impostor_pairs": int((~same).sum()),
        "failed_to_acquire": failures,
        "best_accuracy": acc,
        "best_threshold": t_best,
        "eer": eer(scores, same),
        "dprime": rates.dprime(scores[same], scores[~same]),
        "genuine": rates.summary(scores[same]),
        "impostor": rates.summary(scores[~same]),
        "tar_at_far": [tar_at_far(scores, same, t) for t in targets],
        "roc": roc(scores, same),
    }
    if people is not None and n_boot:
        doc["best_accuracy_ci"] = bootstrap_ci(
            list(people), lambda idx: best_accuracy(scores[idx], same[idx])[0], n_boot=n_boot, seed=seed
        )
    return doc
