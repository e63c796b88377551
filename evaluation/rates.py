"""Error rates against a threshold, shared by the open-set, verification and calibration code.

Convention everywhere: a comparison is accepted (match, alert) when its score is
``>= threshold``. A rate is *measurable* at a target only when the data can
resolve it (at least ``1 / target`` trials); it is *trustworthy* only once about
30 errors have been observed (Doddington's rule of 30), see ``bootstrap.trust``.
"""

from __future__ import annotations

import math

import numpy as np


def accepted_rate(scores: np.ndarray, threshold: float) -> float:
    """Share of ``scores`` at or above ``threshold`` (0.0 for no scores)."""
    scores = np.asarray(scores, np.float64)
    return float(np.mean(scores >= threshold)) if scores.size else 0.0


def measurable(trials: int, target: float) -> bool:
    """Can ``trials`` comparisons resolve a rate as small as ``target``?"""
    return trials > 0 and trials * target >= 1.0 - 1e-9


def threshold_at_rate(negatives: np.ndarray, target: float) -> float:
    """The lowest threshold at which at most ``target`` of ``negatives`` are accepted.

    With the negatives sorted high to low, ``k = floor(target * n)`` false
    accepts are allowed, so the threshold sits just above the (k+1)-th highest.
    """
    neg = np.sort(np.asarray(negatives, np.float64))[::-1]
    if neg.size == 0:
        return -math.inf
    k = math.floor(target * neg.size + 1e-9)
    if k >= neg.size:
        return -math.inf
    return float(np.nextafter(neg[k], math.inf))


def candidate_thresholds(*score_sets: np.ndarray) -> np.ndarray:
    """Every distinct finite score, high to low, plus +inf (accept nothing)."""
    allv = np.concatenate([np.asarray(s, np.float64).ravel() for s in score_sets] or [np.zeros(0)])
    allv = allv[np.isfinite(allv)]
    return np.concatenate([[math.inf], np.unique(allv)[::-1]])


def dprime(genuine: np.ndarray, impostor: np.ndarray) -> float | None:
    """Decidability index: separation of the two score distributions in pooled standard deviations."""
    g, i = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
    g, i = g[np.isfinite(g)], i[np.isfinite(i)]
    if g.size < 2 or i.size < 2:
        return None
    spread = math.sqrt((g.var(ddof=1) + i.var(ddof=1)) / 2)
    return float((g.mean() - i.mean()) / spread) if spread > 0 else None


def summary(scores: np.ndarray) -> dict:
    s = np.asarray(scores, np.float64)
    s = s[np.isfinite(s)]
    if not s.size:
        return {"count": 0}
    return {
        "count": int(s.size),
        "min": round(float(s.min()), 4),
        "median": round(float(np.median(s)), 4),
        "mean": round(float(s.mean()), 4),
        "max": round(float(s.max()), 4),
    }
