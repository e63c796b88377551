"""Open-set identification: the watchlist question "is this one of the enrolled people, and who?".

Each probe is searched against the whole gallery; a person's score is the best
score over that person's enrolled photos (per-person max). Terms (NIST IR 8271):

- **mated probe**: a face of someone enrolled. It is a *miss* unless the right
  person comes first (rank 1) with a score at or above the threshold. A mated
  probe where no usable face was found also counts as a miss.
- **non-mated probe**: a face of someone not enrolled. It is a *false alert*
  when the best gallery score is at or above the threshold.
- **FNIR(t)**: share of mated probes missed; **FPIR(t)**: share of non-mated
  probes that raise a false alert. Lowering the threshold trades one for the other;
  the DET curve draws that trade.
- **wrong-person rate(t)**: share of mated probes whose top candidate, above the
  threshold, is someone else: the alert names the wrong person.
- **rank-k hit rate**: share of mated probes (where a face was found) whose
  person is among the k best candidates, whatever the threshold.

Per track when probes come from video (scores fused by max over a track's
frames), per image otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lookout.evaluation import rates
from lookout.evaluation.bootstrap import bootstrap_ci, trust

FPIR_TARGETS = (1e-2, 3e-3, 1e-3)


def person_scores(probes: np.ndarray, gallery: np.ndarray, owner: np.ndarray, n_persons: int) -> np.ndarray:
    """(P, n_persons) best cosine score of each probe against each person's enrolled vectors."""
    out = np.full((len(probes), n_persons), -np.inf, np.float64)
    if len(probes) == 0 or len(gallery) == 0:
        return out
    raw = probes.astype(np.float64) @ gallery.astype(np.float64).T
    for j in range(n_persons):
        cols = owner == j
        if cols.any():
            out[:, j] = raw[:, cols].max(1)
    return out


def fuse_tracks(
    scores: np.ndarray, truth: np.ndarray, acquired: np.ndarray, subjects: Sequence[str], tracks: Sequence[str | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """One row per track: per person, the max score over the track's acquired frames.

    Probes with no track stay rows of their own. A track is acquired when any of
    its frames is. All frames of a track must share the same truth.
    """
    keys: dict[str, list[int]] = {}
    for i, t in enumerate(tracks):
        keys.setdefault(t if t is not None else f"\0{i}", []).append(i)
    rows, tr, acq, subj = [], [], [], []
    for members in keys.values():
        idx = np.asarray(members)
        if len(set(truth[idx].tolist())) != 1:
            raise ValueError(f"track mixes identities: items {members}")
        ok = idx[acquired[idx]]
        rows.append(scores[ok].max(0) if len(ok) else np.full(scores.shape[1], -np.inf))
        tr.append(truth[idx[0]])
        acq.append(bool(len(ok)))
        subj.append(subjects[idx[0]])
    width = scores.shape[1]
    return (np.asarray(rows, np.float64).reshape(-1, width), np.asarray(tr), np.asarray(acq, bool), subj)


@dataclass
class OpenSet:
    """Search outcomes: ``scores`` (P, persons), ``truth`` person index or -1 for non-mated."""

    scores: np.ndarray
    truth: np.ndarray
    acquired: np.ndarray
    subjects: list[str]
    unit: str = "image"  # or "track"

    def __post_init__(self) -> None:
        s = np.where(self.acquired[:, None], self.scores, -np.inf) if len(self.scores) else self.scores
        self.scores = s
        self.mated = self.truth >= 0
        p = len(self.truth)
        rows = np.arange(p)
        true = np.full(p, -np.inf)
        true[self.mated] = s[rows[self.mated], self.truth[self.mated]]
        self.true_score = true
        self.top_score = s.max(1) if s.shape[1] else np.full(p, -np.inf)
        self.top_person = s.argmax(1) if s.shape[1] else np.full(p, -1)
        # Rank of the true person: 1 + people scoring strictly higher (ties favour the truth).
        higher = (s > true[:, None]).sum(1)
        self.rank = np.where(self.mated & self.acquired & np.isfinite(true), higher + 1, np.iinfo(np.int32).max)

    # -- rates at one threshold ----------------------------------------------------
    def _mated_idx(self, idx: np.ndarray | None) -> np.ndarray:
        idx = np.arange(len(self.truth)) if idx is None else idx
        return idx[self.mated[idx]]

    def _nonmated_idx(self, idx: np.ndarray | None) -> np.ndarray:
        idx = np.arange(len(self.truth)) if idx is None else idx
        return idx[~self.mated[idx]]

    def misses(self, t: float, idx: np.ndarray | None = None) -> np.ndarray:
        m = self._mated_idx(idx)
        return ~((self.rank[m] == 1) & (self.true_score[m] >= t))

    def false_alerts(self, t: float, idx: np.ndarray | None = None) -> np.ndarray:
        return self.top_score[self._nonmated_idx(idx)] >= t

    def fnir(self, t: float, idx: np.ndarray | None = None) -> float | None:
        m = self.misses(t, idx)
        return float(m.mean()) if m.size else None

    def fpir(self, t: float, idx: np.ndarray | None = None) -> float | None:
        f = self.false_alerts(t, idx)
        return float(f.mean()) if f.size else None

    def wrong_person_rate(self, t: float, idx: np.ndarray | None = None) -> float | None:
        m = self._mated_idx(idx)
        if not m.size:
            return None
        return float(((self.rank[m] != 1) & (self.top_score[m] >= t) & self.acquired[m]).mean())

    def rank_hit_rate(self, k: int, idx: np.ndarray | None = None) -> float | None:
        m = self._mated_idx(idx)
        m = m[self.acquired[m]]
        return float((self.rank[m] <= k).mean()) if m.size else None

    # -- scores for plots and d' ----------------------------------------------------
    def genuine_scores(self) -> np.ndarray:
        ok = self.mated & self.acquired
        return self.true_score[ok]

    def impostor_scores(self) -> np.ndarray:
        """Every acquired probe against every person it is not (1:1 impostor comparisons)."""
        mask = np.ones_like(self.scores, bool)
        rows = np.where(self.mated)[0]
        mask[rows, self.truth[rows]] = False
        mask &= self.acquired[:, None]
        return self.scores[mask]

    def nonmated_top_scores(self) -> np.ndarray:
        return self.top_score[~self.mated]

    # -- curves ----------------------------------------------------------------------
    def det(self) -> dict:
        """FNIR and FPIR at every distinct score as threshold (high to low)."""
        thresholds = rates.candidate_thresholds(self.true_score[self.mated], self.nonmated_top_scores())
        fnir = [self.fnir(t) for t in thresholds]
        fpir = [self.fpir(t) for t in thresholds]
        return {"threshold": thresholds.tolist(), "fnir": fnir, "fpir": fpir}

    def threshold_for_fpir(self, target: float, idx: np.ndarray | None = None) -> float:
        return rates.threshold_at_rate(self.top_score[self._nonmated_idx(idx)], target)


def evaluate(
    openset: OpenSet, threshold: float, targets: Sequence[float] = FPIR_TARGETS, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Every open-set figure, with people-bootstrap intervals and trust notes."""
    n_mated = int(openset.mated.sum())
    n_non = int((~openset.mated).sum())
    subjects = openset.subjects

    def ci(fn):
        return bootstrap_ci(subjects, fn, n_boot=n_boot, seed=seed)

    misses = int(openset.misses(threshold).sum())
    alerts = int(openset.false_alerts(threshold).sum())
    acquired_mated = openset.mated & openset.acquired
    rank1_errors = int((openset.rank[acquired_mated] != 1).sum())
    doc: dict = {
        "unit": openset.unit,
        "mated_probes": n_mated,
        "nonmated_probes": n_non,
        "gallery_people": int(openset.scores.shape[1]),
        "people_in_probes": len(set(subjects)),
        "at_threshold": {
            "threshold": threshold,
            "fnir": openset.fnir(threshold),
            "fnir_ci": ci(lambda idx: openset.fnir(threshold, idx)),
            "fnir_trust": trust(misses, n_mated),
            "fpir": openset.fpir(threshold),
            "fpir_ci": ci(lambda idx: openset.fpir(threshold, idx)),
            "fpir_trust": trust(alerts, n_non),
            "wrong_person_rate": openset.wrong_person_rate(threshold),
        },
        "rank1": openset.rank_hit_rate(1),
        "rank1_ci": ci(lambda idx: openset.rank_hit_rate(1, idx)),
        "rank1_trust": trust(rank1_errors, int(acquired_mated.sum())),
        "rank5": openset.rank_hit_rate(5),
        "rank5_note": (
            "the gallery has 5 people or fewer: everyone is within rank 5, so rank-5 says nothing"
            if openset.scores.shape[1] <= 5
            else None
        ),
        "fnir_at_fpir": [],
    }
    for target in targets:
        entry: dict = {"target_fpir": target}
        if not rates.measurable(n_non, target):
            need = math.ceil(1 / target)
            entry.update(
                measurable=False,
                reason=f"needs at least {need} non-mated probes to resolve an FPIR of {target:g}; there are {n_non}",
            )
        else:
            t = openset.threshold_for_fpir(target)
            entry.update(
                measurable=True,
                threshold=t,
                fnir=openset.fnir(t),
                fpir=openset.fpir(t),
                fnir_ci=ci(lambda idx, tg=target: openset.fnir(openset.threshold_for_fpir(tg, idx), idx)),
                fnir_trust=trust(int(openset.misses(t).sum()), n_mated),
                fpir_trust=trust(int(openset.false_alerts(t).sum()), n_non),
            )
        doc["fnir_at_fpir"].append(entry)
    # What the data can say: FNIR where no non-mated probe raises an alert.
    if n_non:
        t0 = float(np.nextafter(openset.nonmated_top_scores().max(), math.inf))
        doc["fnir_at_zero_false_alerts"] = {
            "threshold": t0,
            "fnir": openset.fnir(t0),
            "fpir_upper_95": min(1.0, 3 / n_non),
            "note": f"just above the highest non-mated score: no false alert among {n_non} non-mated probes, "
            f"which only shows FPIR is below {min(1.0, 3 / n_non):.2g} (rule of three)",
        }
    return doc
