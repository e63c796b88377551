"""The decision threshold a gallery ships with: chosen for a target FPIR at the gallery's own size.

Why: a threshold means nothing without the gallery size. Every decision
compares a stranger's face with every enrolled photo, so the share of
strangers named as someone (FPIR) grows with the gallery. ``gallery build``/
``update`` choose the threshold for a target FPIR (default 1% of strangers per
decision) from two estimates:

1. **the model's FMR curve measured on real faces** (``extra.calibration`` in
   the model catalog: figures from faces-scale's 1.37 million different-person
   face pairs, never photos or scores). With a per-comparison false-match rate
   FMR(t), a gallery of M photos gives FPIR(t) ~ 1 - (1 - FMR(t))^M (independent
   comparisons: cautious). Interpolated in log FMR, extrapolated log-linearly
   below its last measured point (~2e-6; said in the basis). It describes
   faces-scale's population, not the gallery's.
2. **the gallery's own different-person scores** (free at build time): each
   enrolled photo against every other person's photos, leave-one-person-out
   (LOO). The share of photos whose best other-person score reaches t is a
   direct FPIR at this gallery's size for strangers like the enrolled: a
   measurement of the deployment's own population.

Which decides:

- **From ``10 * safety / target`` photos (1,500 at 1% for the default model)
  the gallery's own scores decide.** The threshold is the lowest t at which a
  one-sided 90% Clopper-Pearson upper bound on the LOO share is at most
  target / safety. The safety factor (per model, in its calibration: 1.5 for
  OMZ and dlib, 2.0 for FaceNet) covers LOO's optimism: on faces-scale
  strangers' FPIR was 0.9-1.2x the LOO share at the same t with OMZ and dlib,
  1.1-1.9x with FaceNet (docs/evaluation.md).
- Just past that size the model's table stays a floor that fades out over one
  doubling of the gallery (weight 1 - log2(photos / start)), so a gallery one
  photo bigger never gets a much lower threshold than a slightly smaller one;
  it may get a *higher* one at the switch, when its own scores say its
  population is harder than faces-scale (look-alikes, duplicate people).
- Smaller galleries cannot measure the target: the model's table decides; from
  ``10 / target`` photos the own share (target / safety, no bound) can still
  raise it (a heavy tail is caught early).

The predicted FPIR is the gallery's own share at the threshold once it decides
(else the table's); the predicted FNIR comes from the gallery's own mates
(people with two or more photos: each photo against the person's others) when
there are enough of them, else from the model's table; failures to enrol come
on top.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from lookout.model_store.catalog import ALL_MODELS

DEFAULT_TARGET_FPIR = 0.01
# How much the gallery's own leave-one-person-out share may understate strangers' FPIR: each model's
# calibration carries its measured factor (faces-scale: OMZ and dlib 1.5, FaceNet 2.0; docs/evaluation.md);
# a model measured by nobody gets this cautious one.
UNMEASURED_SAFETY_FACTOR = 2.0
OWN_CONFIDENCE = 0.9  # one-sided Clopper-Pearson upper bound on the gallery's own share
OWN_MIN_EXCEEDANCES = 10  # the own estimate decides from 10 expected exceedances at target / safety
MIN_MATES = 50  # people-with-several-photos scores needed to predict FNIR from the gallery itself
_CHUNK = 512
# An operator's threshold predicted to name more than this many times the target share of strangers is refused
# unless the operator accepts it in so many words (`--accept-fpir`): a typo (-0.3 for 0.3) texts about everyone.
FAR_ABOVE_TARGET = 5.0


def threshold_problem(value: float) -> str | None:
    """Why ``value`` cannot be a decision threshold (a cosine: finite, within [-1, 1]), or None."""
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        return f"a threshold is a cosine between -1 and 1, got {value}"
    return None


def threshold_arg(text: str) -> float:
    """argparse type for ``--threshold``: a cosine between -1 and 1 (refuses nan, inf, 5)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    problem = threshold_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


@dataclass(frozen=True)
class ModelCalibration:
    """A model's FMR and FNMR at measured thresholds (ascending threshold, descending FMR)."""

    source: str
    points: tuple[tuple[float, float, float], ...]  # (threshold, FMR, FNMR)
    own_safety_factor: float = UNMEASURED_SAFETY_FACTOR  # strangers' FPIR / the gallery's own share, with room

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelCalibration:
        points = tuple(sorted((float(t), float(f), float(n)) for t, f, n in doc["points"]))
        safety = float(doc.get("own_safety_factor", UNMEASURED_SAFETY_FACTOR))
        return cls(source=str(doc["set"]), points=points, own_safety_factor=safety)

    def threshold_for_fmr(self, fmr: float) -> tuple[float, bool]:
        """(threshold, extrapolated) giving at most ``fmr`` per comparison."""
        pts = self.points
        if fmr >= pts[0][1]:
            return pts[0][0], False
        for (t0, f0, _), (t1, f1, _) in pairwise(pts):
            if f1 <= fmr <= f0:
                return _lerp(math.log10(fmr), math.log10(f0), math.log10(f1), t0, t1), False
        (t0, f0, _), (t1, f1, _) = pts[-2], pts[-1]
        return _lerp(math.log10(fmr), math.log10(f0), math.log10(f1), t0, t1), True

    def fmr_at(self, threshold: float) -> float:
        pts = self.points
        if threshold <= pts[0][0]:
            return pts[0][1]
        pairs = list(pairwise(pts))
        (t0, f0, _), (t1, f1, _) = next(((a, b) for a, b in pairs if threshold <= b[0]), pairs[-1])
        return 10 ** _lerp(threshold, t0, t1, math.log10(f0), math.log10(f1))

    def fnmr_at(self, threshold: float) -> float:
        pts = self.points
        if threshold <= pts[0][0]:
            return pts[0][2]
        pairs = list(pairwise(pts))
        (t0, _, n0), (t1, _, n1) = next(((a, b) for a, b in pairs if threshold <= b[0]), pairs[-1])
        return min(1.0, max(0.0, _lerp(threshold, t0, t1, n0, n1)))


def _lerp(x: float, x0: float, x1: float, y0: float, y1: float) -> float:
    return y0 if x1 == x0 else y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def model_calibration(name: str, extra: dict[str, Any] | None = None) -> ModelCalibration | None:
    """The catalog's calibration for a model, or for the model a derived one (INT8) was made from."""
    spec = ALL_MODELS.get(name) or ALL_MODELS.get((extra or {}).get("derived_from", ""))
    doc = spec.extra.get("calibration") if spec else None
    return ModelCalibration.from_dict(doc) if doc else None


@dataclass(frozen=True)
class GalleryScores:
    """The gallery's own scores, leave-one-person-out, per enrolled photo."""

    best_other: np.ndarray  # best score against any other person's photos (a stranger-like score)
    best_mate: np.ndarray  # for people with 2+ photos: best score against the person's other photos

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, owners: np.ndarray) -> GalleryScores:
        """Exact, in chunks: M x M inner products (24,600 photos: ~10 s on 2 cores)."""
        vectors = np.asarray(vectors, np.float32)
        owners = np.asarray(owners)
        best_other = np.full(len(vectors), -np.inf, np.float32)
        best_mate = np.full(len(vectors), -np.inf, np.float32)
        for start in range(0, len(vectors), _CHUNK):
            rows = slice(start, start + _CHUNK)
            scores = vectors[rows] @ vectors.T
            same = owners[rows, None] == owners[None, :]
            best_other[rows] = np.where(same, -np.inf, scores).max(1)
            scores[np.arange(scores.shape[0]), np.arange(start, start + scores.shape[0])] = -np.inf  # not its own mate
            best_mate[rows] = np.where(same, scores, -np.inf).max(1)
        return cls(best_other[np.isfinite(best_other)], best_mate[np.isfinite(best_mate)])


def _share_at_or_above(values: np.ndarray, threshold: float) -> float:
    return float(np.mean(values >= threshold)) if len(values) else 0.0


def _threshold_for_count(values: np.ndarray, allowed: int) -> float:
    """Smallest threshold with at most ``allowed`` of ``values`` at or above it."""
    ordered = np.sort(values)[::-1]
    return float(np.nextafter(np.float32(ordered[allowed]), np.float32(np.inf))) if allowed < len(ordered) else -1.0


def _threshold_for_share(values: np.ndarray, share: float) -> float:
    """Smallest threshold with at most ``share`` of ``values`` at or above it."""
    return _threshold_for_count(values, math.floor(share * len(values)))


def _binomial_log_pmf(n: int, p: float, up_to: int) -> np.ndarray:
    """log P(X = x) for X ~ Binomial(n, p), x = 0..up_to (a recurrence in log space: exact for any n)."""
    i = np.arange(1, up_to + 1)
    steps = np.log((n - i + 1) / i) + math.log(p) - math.log1p(-p)
    return n * math.log1p(-p) + np.concatenate(([0.0], np.cumsum(steps)))


def share_upper_bound(count: int, n: int, confidence: float = OWN_CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound on a share seen as ``count`` of ``n``: the largest p with
    P(X <= count; n, p) >= 1 - confidence. Exact (no normal approximation), which matters at small counts."""
    if count >= n:
        return 1.0
    low, high = count / n, 1.0
    for _ in range(50):
        mid = (low + high) / 2
        if float(np.exp(_binomial_log_pmf(n, mid, count)).sum()) > 1 - confidence:
            low = mid
        else:
            high = mid
    return high


def most_allowed(n: int, share: float, confidence: float = OWN_CONFIDENCE) -> int:
    """The largest count of ``n`` whose upper bound (``share_upper_bound``) is at most ``share``; -1 if none is."""
    cdf = np.cumsum(np.exp(_binomial_log_pmf(n, share, n)))
    return int(np.searchsorted(cdf, 1 - confidence, side="right")) - 1


def own_decides_from(target_fpir: float, safety: float) -> int:
    """Gallery photos from which the gallery's own scores decide: 10 expected exceedances at target / safety."""
    return math.ceil(OWN_MIN_EXCEEDANCES * safety / target_fpir - 1e-9)


def own_threshold(best_other: np.ndarray, allowed_share: float, confidence: float = OWN_CONFIDENCE) -> float | None:
    """The lowest threshold at which the upper confidence bound on the share of photos whose best other-person
    score reaches it is at most ``allowed_share``; None when the gallery is too small to show even that."""
    allowed = most_allowed(len(best_other), allowed_share, confidence)
    return _threshold_for_count(best_other, allowed) if allowed >= 0 else None


def choose_threshold(
    model_name: str,
    model_extra: dict[str, Any] | None,
    persons: int,
    photos: int,
    own: GalleryScores | None,
    target_fpir: float = DEFAULT_TARGET_FPIR,
    safety: float | None = None,
    confidence: float = OWN_CONFIDENCE,
) -> tuple[float, dict[str, Any]]:
    """(threshold, basis) for a gallery of ``persons`` people and ``photos`` photos at ``target_fpir``.

    The basis says how: target, method, both estimates, the safety factor and the
    bound, predicted FPIR and FNIR. Without a calibration for the model and
    without enough gallery photos, the threshold cannot be chosen for the gallery:
    a ``ValueError`` says so (the operator gives ``--threshold`` or runs ``lookout calibrate``).
    ``safety`` defaults to the model's measured factor (its calibration), else ``UNMEASURED_SAFETY_FACTOR``.
    """
    if not 0 < target_fpir < 1:
        raise ValueError(f"target FPIR must be between 0 and 1, got {target_fpir}")
    calibration = model_calibration(model_name, model_extra)
    safety = safety or (calibration.own_safety_factor if calibration else UNMEASURED_SAFETY_FACTOR)
    if safety < 1:
        raise ValueError(f"the safety factor must be at least 1, got {safety}")
    photos = max(photos, 1)
    basis: dict[str, Any] = {"target_fpir": target_fpir, "gallery_persons": persons, "gallery_photos": photos}
    t_table = _table_estimate(calibration, target_fpir, photos, basis)
    t_own, weight = _own_estimate(own, target_fpir, safety, confidence, basis)
    if t_own is not None and weight is not None:
        threshold, method = _own_decides(t_own, t_table, weight)
    elif t_table is not None:
        threshold, method = t_table, "the model's calibration"
        if t_own is not None and t_own > t_table:
            threshold, method = t_own, "the gallery's own scores (higher than the model's calibration)"
    else:
        raise ValueError(
            f"no calibration for model {model_name} and too few photos "
            f"({len(own.best_other) if own is not None else 0}) to estimate from the gallery itself "
            f"(needs {own_decides_from(target_fpir, safety)}): give --threshold or run `lookout calibrate`"
        )
    threshold = _round_up(threshold)
    basis["method"] = method
    _predict(basis, threshold, calibration, own, own_decides=weight is not None, confidence=confidence)
    return threshold, basis


def _table_estimate(
    calibration: ModelCalibration | None, target_fpir: float, photos: int, basis: dict[str, Any]
) -> float | None:
    """The model table's threshold for the target at ``photos`` photos (None without a table)."""
    per_comparison = 1 - (1 - target_fpir) ** (1 / photos)
    basis["fmr_per_comparison"] = float(f"{per_comparison:.3g}")
    basis["fpir_formula"] = "1 - (1 - FMR(t))^photos"
    if calibration is None:
        return None
    threshold, extrapolated = calibration.threshold_for_fmr(per_comparison)
    basis["model_calibration"] = {
        "set": calibration.source,
        "threshold": round(threshold, 4),
        "extrapolated_beyond_measured": extrapolated,
    }
    return threshold


def _own_estimate(
    own: GalleryScores | None, target_fpir: float, safety: float, confidence: float, basis: dict[str, Any]
) -> tuple[float | None, float | None]:
    """(threshold, weight) from the gallery's own scores. The weight is set when they decide (bound at
    target / safety); without it the threshold is a point estimate that may only raise the table's, and
    None means too few photos for either."""
    if own is None:
        return None, None
    scored = len(own.best_other)
    decides_from = own_decides_from(target_fpir, safety)
    mine = basis["gallery_own"] = {
        "photos_scored": scored,
        "mates_scored": len(own.best_mate),
        "safety_factor": safety,
        "allowed_share": float(f"{target_fpir / safety:.4g}"),
        "decides_from_photos": decides_from,
    }
    threshold: float | None = None
    weight = None
    if scored >= decides_from:
        threshold = own_threshold(own.best_other, target_fpir / safety, confidence)
        weight = min(1.0, math.log2(scored / decides_from)) if threshold is not None else None
        mine["weight"] = round(weight, 3) if weight is not None else None
    elif scored >= OWN_MIN_EXCEEDANCES / target_fpir:  # enough to catch a heavy tail, not to decide
        threshold = _threshold_for_share(own.best_other, target_fpir / safety)
    if threshold is not None:
        mine["threshold"] = _round_up(threshold)
    return threshold, weight


def _own_decides(t_own: float, t_table: float | None, weight: float) -> tuple[float, str]:
    """The gallery's own bound decides; just past ``decides_from`` the model's table stays a floor that fades
    out over one doubling of the gallery (no jump down where the own estimate takes over)."""
    own = "the gallery's own scores (leave one person out, upper confidence bound, safety factor)"
    if t_table is None or t_table <= t_own or weight >= 1:
        return t_own, own
    threshold = t_own + (1 - weight) * (t_table - t_own)
    return threshold, f"{own}, the model's calibration as a floor fading out (weight {1 - weight:.2f})"


def _round_up(threshold: float) -> float:
    """Four decimals, never below the estimate."""
    return round(threshold + 5e-5, 4)


def _predict(
    basis: dict[str, Any],
    threshold: float,
    calibration: ModelCalibration | None,
    own: GalleryScores | None,
    own_decides: bool,
    confidence: float,
) -> None:
    """Predicted FPIR (the gallery's own share once it decides, else the table's or the higher of both) and
    FNIR (the gallery's own mates when there are enough, else the table's), written into the basis."""
    own_share = None
    if own is not None and "threshold" in basis["gallery_own"]:
        count = int(np.sum(own.best_other >= threshold))
        own_share = count / len(own.best_other)
        if own_decides:
            bound = share_upper_bound(count, len(own.best_other), confidence)
            basis["gallery_own"] |= {
                "photos_at_or_above": count,
                f"upper_bound_{round(confidence * 100)}": round(bound, 5),
            }
    if own_decides or calibration is None:
        fpir = own_share or 0.0
    else:
        table = 1 - (1 - calibration.fmr_at(threshold)) ** basis["gallery_photos"]
        fpir = table if own_share is None else max(table, own_share)
    basis["predicted_fpir"] = float(f"{fpir:.3g}")
    if own is not None and len(own.best_mate) >= MIN_MATES:
        basis["predicted_fnir"] = round(1 - _share_at_or_above(own.best_mate, threshold), 4)
        basis["predicted_fnir_from"] = "the gallery's own mates (people with 2+ photos), failures to enrol not included"
    elif calibration is not None:
        basis["predicted_fnir"] = round(calibration.fnmr_at(threshold), 4)
        basis["predicted_fnir_from"] = "model calibration (genuine face pairs), failures to enrol not included"


def predict_at(
    threshold: float,
    model_name: str,
    model_extra: dict[str, Any] | None,
    persons: int,
    photos: int,
    own: GalleryScores | None,
    target_fpir: float = DEFAULT_TARGET_FPIR,
) -> dict[str, Any]:
    """The basis of a threshold the operator gave: what it predicts at this gallery's size (FPIR from the model's
    calibration and, where the gallery has enough photos, the higher of that and its own share; FNIR as for a
    chosen threshold). ``predicted_fpir`` is absent when neither estimate exists (no calibration, small gallery)."""
    if not 0 < target_fpir < 1:
        raise ValueError(f"target FPIR must be between 0 and 1, got {target_fpir}")
    calibration = model_calibration(model_name, model_extra)
    photos = max(photos, 1)
    basis: dict[str, Any] = {
        "chosen_by": "operator (--threshold)",
        "target_fpir": target_fpir,
        "gallery_persons": persons,
        "gallery_photos": photos,
    }
    estimates = []
    if calibration is not None:
        fmr, below = _fmr_cautious(calibration, threshold)
        table = 1 - (1 - fmr) ** photos
        basis["model_calibration"] = {"set": calibration.source, "predicted_fpir": float(f"{table:.3g}")}
        if below:
            basis["model_calibration"]["extrapolated_below_measured"] = True
        estimates.append(table)
    if own is not None and len(own.best_other) >= OWN_MIN_EXCEEDANCES / target_fpir:
        share = _share_at_or_above(own.best_other, threshold)
        basis["gallery_own"] = {"photos_scored": len(own.best_other), "share_at_or_above": float(f"{share:.3g}")}
        estimates.append(share)
    if estimates:
        basis["predicted_fpir"] = float(f"{max(estimates):.3g}")
    if own is not None and len(own.best_mate) >= MIN_MATES:
        basis["predicted_fnir"] = round(1 - _share_at_or_above(own.best_mate, threshold), 4)
    elif calibration is not None:
        basis["predicted_fnir"] = round(calibration.fnmr_at(threshold), 4)
    return basis


def _fmr_cautious(calibration: ModelCalibration, threshold: float) -> tuple[float, bool]:
    """(FMR at ``threshold``, extrapolated below the table). Below the lowest measured threshold ``fmr_at`` holds the
    first point's FMR; an operator's value there (a typo: 0.03 for 0.3) is extrapolated log-linearly upwards from
    the first two points instead, capped at 1: cautious, never the optimistic floor."""
    (t0, f0, _), (t1, f1, _) = calibration.points[0], calibration.points[min(1, len(calibration.points) - 1)]
    if threshold >= t0 or t1 == t0:
        return calibration.fmr_at(threshold), False
    log_fmr = _lerp(threshold, t0, t1, math.log10(f0), math.log10(f1))
    return min(1.0, 10**log_fmr), True


def operator_threshold_problem(
    basis: dict[str, Any], accept_hint: str = "check the value, or pass --accept-fpir to sign it anyway"
) -> str | None:
    """Why an operator's threshold should not be used without accepting it in so many words: its predicted FPIR is
    more than ``FAR_ABOVE_TARGET`` times the target. None when it is not (or cannot be predicted)."""
    predicted, target = basis.get("predicted_fpir"), basis["target_fpir"]
    if predicted is None or predicted <= FAR_ABOVE_TARGET * target:
        return None
    return (
        f"predicted FPIR {predicted:.1%} at {basis['gallery_persons']} people / {basis['gallery_photos']} photos: "
        f"{predicted / target:.0f} times the target {target:.2%} (that share of strangers walking past would be "
        f"named as someone); {accept_hint}"
    )


def _pct(share: float) -> str:
    """A share as a percentage with two significant digits (0.0012%, 1.5%, 100%)."""
    return f"{share * 100:.2g}%"


def describe(value: float, basis: dict[str, Any]) -> str:
    """One line for the build summary."""
    if str(basis.get("chosen_by", "")).startswith("operator"):
        predicted = basis.get("predicted_fpir")
        return f"threshold {value:.4f} ({basis['chosen_by']}): " + (
            f"predicted FPIR {_pct(predicted)} at {basis['gallery_persons']} people / {basis['gallery_photos']} photos "
            f"(target {basis['target_fpir']:.2%})"
            + (f", FNIR {basis['predicted_fnir']:.1%} plus failures to enrol" if "predicted_fnir" in basis else "")
            if predicted is not None
            else "FPIR cannot be predicted (no calibration for the model, too few photos)"
        )
    if "target_fpir" not in basis:
        return f"threshold {value:.4f} ({basis.get('chosen_by', 'given')})"
    extrapolated = basis.get("model_calibration", {}).get("extrapolated_beyond_measured")
    own = basis.get("gallery_own", {})
    bound = next((v for k, v in own.items() if k.startswith("upper_bound_")), None)
    return (
        f"threshold {value:.4f} for a target FPIR of {basis['target_fpir']:.2%} at {basis['gallery_persons']} people "
        f"/ {basis['gallery_photos']} photos ({basis['method']}); predicted FPIR {basis['predicted_fpir']:.2%}, "
        f"FNIR {basis.get('predicted_fnir', float('nan')):.1%} plus failures to enrol"
        + (
            f"; own scores: {own['photos_at_or_above']} of {own['photos_scored']} photos at or above "
            f"{own['threshold']:.4f}, upper bound {bound:.2%} <= target / {own['safety_factor']:g}"
            if bound is not None
            else ""
        )
        + ("; FMR extrapolated beyond what was measured" if extrapolated and own.get("weight") != 1 else "")
    )
