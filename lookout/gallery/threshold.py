"""The decision threshold a gallery ships with: chosen for a target FPIR at the gallery's own size.

Why: a threshold means nothing without the gallery size. Every decision
compares a stranger's face with every enrolled photo, so the share of
strangers named as someone (FPIR) grows with the gallery. With a per-comparison
false-match rate FMR(t), a gallery of M photos gives

    FPIR(t) ~ 1 - (1 - FMR(t))^M

(independent comparisons; a person's photos are correlated, so this errs on the
cautious side). ``gallery build``/``update`` solve it for the target FPIR
(default 1% of strangers per decision) from two estimates and keep the more
cautious (higher) threshold:

1. **the model's FMR curve measured on real faces** (``extra.calibration`` in
   the model catalog: figures from faces-scale's 1.37 million different-person
   face pairs, never photos or scores), interpolated in log FMR, extrapolated
   log-linearly from its last measured decade below ~2e-6 (said in the basis);
2. **the gallery's own different-person scores** (free at build time): each
   enrolled photo against every other person's photos, leave-one-person-out.
   The share of photos whose best other-person score reaches t is a direct
   FPIR at the gallery's size for strangers like the enrolled. Used when it has
   enough photos for the target (at least ``MIN_EXCEEDANCES / target``).

The predicted FNIR comes from the gallery's own mates (people with two or more
photos: each photo against the person's others) when there are enough of them,
else from the model's table (genuine face pairs); failures to enrol come on top.
Validated on faces-scale (docs/evaluation.md): thresholds picked from one part
of the people for galleries of 25 to 99 gave measured FPIR 0.7-1.3% on held-out
strangers for a 1% target (6 splits, each +-0.5%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from lookout.model_store.catalog import ALL_MODELS

DEFAULT_TARGET_FPIR = 0.01
MIN_EXCEEDANCES = 10  # the gallery's own estimate needs this many photos at the target share
MIN_MATES = 50  # people-with-several-photos scores needed to predict FNIR from the gallery itself
_CHUNK = 512


@dataclass(frozen=True)
class ModelCalibration:
    """A model's FMR and FNMR at measured thresholds (ascending threshold, descending FMR)."""

    source: str
    points: tuple[tuple[float, float, float], ...]  # (threshold, FMR, FNMR)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelCalibration:
        points = tuple(sorted((float(t), float(f), float(n)) for t, f, n in doc["points"]))
        return cls(source=str(doc["set"]), points=points)

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


def _threshold_for_share(values: np.ndarray, share: float) -> float:
    """Smallest threshold with at most ``share`` of ``values`` at or above it."""
    ordered = np.sort(values)[::-1]
    allowed = math.floor(share * len(ordered))
    return float(np.nextafter(np.float32(ordered[allowed]), np.float32(np.inf))) if allowed < len(ordered) else -1.0


def choose_threshold(
    model_name: str,
    model_extra: dict[str, Any] | None,
    persons: int,
    photos: int,
    own: GalleryScores | None,
    target_fpir: float = DEFAULT_TARGET_FPIR,
) -> tuple[float, dict[str, Any]]:
    """(threshold, basis) for a gallery of ``persons`` people and ``photos`` photos at ``target_fpir``.

    The basis says how: target, method, both estimates, predicted FPIR and FNIR.
    Without a calibration for the model and without enough gallery photos, the
    threshold cannot be chosen for the gallery: a ``ValueError`` says so (the
    operator gives ``--threshold`` or runs ``lookout calibrate``).
    """
    if not 0 < target_fpir < 1:
        raise ValueError(f"target FPIR must be between 0 and 1, got {target_fpir}")
    calibration = model_calibration(model_name, model_extra)
    photos = max(photos, 1)
    per_comparison = 1 - (1 - target_fpir) ** (1 / photos)
    basis: dict[str, Any] = {
        "target_fpir": target_fpir,
        "gallery_persons": persons,
        "gallery_photos": photos,
        "fmr_per_comparison": float(f"{per_comparison:.3g}"),
        "fpir_formula": "1 - (1 - FMR(t))^photos",
    }
    estimates: dict[str, float] = {}
    if calibration is not None:
        t_table, extrapolated = calibration.threshold_for_fmr(per_comparison)
        estimates["model_calibration"] = t_table
        basis["model_calibration"] = {
            "set": calibration.source,
            "threshold": round(t_table, 4),
            "extrapolated_beyond_measured": extrapolated,
        }
    enough_own = own is not None and len(own.best_other) >= MIN_EXCEEDANCES / target_fpir
    if own is not None:
        basis["gallery_own"] = {"photos_scored": len(own.best_other), "mates_scored": len(own.best_mate)}
    if enough_own and own is not None:
        t_own = _threshold_for_share(own.best_other, target_fpir)
        estimates["gallery_own"] = t_own
        basis["gallery_own"]["threshold"] = round(t_own, 4)
    if not estimates:
        raise ValueError(
            f"no calibration for model {model_name} and too few photos ({photos}) to estimate from the gallery "
            f"itself (needs {math.ceil(MIN_EXCEEDANCES / target_fpir)}): give --threshold or run `lookout calibrate`"
        )
    method = max(estimates, key=lambda k: estimates[k])
    threshold = round(estimates[method] + 5e-5, 4)  # rounded up: never below the estimate
    names = {"model_calibration": "the model's calibration", "gallery_own": "the gallery's own scores"}
    basis["method"] = (
        f"higher of the model's calibration and the gallery's own scores: {names[method]}"
        if len(estimates) > 1
        else names[method]
    )
    fpir = []
    if calibration is not None:
        fpir.append(1 - (1 - calibration.fmr_at(threshold)) ** photos)
    if enough_own and own is not None:
        fpir.append(_share_at_or_above(own.best_other, threshold))
    basis["predicted_fpir"] = float(f"{max(fpir):.3g}")
    if own is not None and len(own.best_mate) >= MIN_MATES:
        basis["predicted_fnir"] = round(1 - _share_at_or_above(own.best_mate, threshold), 4)
        basis["predicted_fnir_from"] = "the gallery's own mates (people with 2+ photos), failures to enrol not included"
    elif calibration is not None:
        basis["predicted_fnir"] = round(calibration.fnmr_at(threshold), 4)
        basis["predicted_fnir_from"] = "model calibration (genuine face pairs), failures to enrol not included"
    return threshold, basis


def describe(value: float, basis: dict[str, Any]) -> str:
    """One line for the build summary."""
    if "target_fpir" not in basis:
        return f"threshold {value:.4f} ({basis.get('chosen_by', 'given')})"
    extrapolated = basis.get("model_calibration", {}).get("extrapolated_beyond_measured")
    return (
        f"threshold {value:.4f} for a target FPIR of {basis['target_fpir']:.2%} at {basis['gallery_persons']} people "
        f"/ {basis['gallery_photos']} photos ({basis['method']}); predicted FPIR {basis['predicted_fpir']:.2%}, "
        f"FNIR {basis.get('predicted_fnir', float('nan')):.1%} plus failures to enrol"
        + ("; FMR extrapolated beyond what was measured" if extrapolated else "")
    )
