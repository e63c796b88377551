"""Choosing the threshold for a target false-alert rate at a given gallery size.

The false-positive identification rate (FPIR) of a watchlist grows with the
gallery: every stranger is compared with every enrolled person, so a threshold
that is safe for 10 people raises false alerts at 10,000. Calibration therefore
ties a threshold to a gallery size and a model (digest and precision).

Method, best first:

1. ``nonmated-max``: search each face of a person *not* enrolled against the
   whole gallery and take its highest score; the threshold is the lowest that
   keeps the share of those at or above it within the target FPIR. Needs
   enough non-mated probes to put ``MIN_FALSE_ALERTS`` of them above the line
   (``ceil(MIN_FALSE_ALERTS / target)`` probes).
2. ``impostor-1to1``: too few non-mated probes. Use the 1:1 impostor scores
   (faces against enrolled people who are not them) at the false-match rate
   that gives the target FPIR over N people: FMR = 1 - (1 - FPIR)^(1/N),
   about FPIR / N. Needs ``ceil(1 / FMR)`` impostor scores.
3. ``impostor-1to1-normal-tail``: still too few; extrapolate from a normal
   distribution fitted to the impostor scores. A guess about the tail, said so.

Operators get the threshold in their terms: expected false alerts per camera
per hour for a given number of passers-by per hour (each passer-by one search).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from lookout.errors import ConfigError, InputError
from lookout.evaluation import rates

MIN_FALSE_ALERTS = 10  # the nonmated-max threshold must sit on at least this many observed false alerts
METHODS = ("nonmated-max", "impostor-1to1", "impostor-1to1-normal-tail")
CALIBRATION_FILE = "calibration.json"
REGROW_FACTOR = 2.0  # a gallery this many times larger (or smaller) than calibrated needs a new calibration


@dataclass
class Calibration:
    threshold: float
    target_fpir: float
    gallery_size: int  # enrolled people the threshold was chosen for
    probe_count: int  # non-mated probes (method 1) or impostor scores (methods 2, 3) it rests on
    method: str
    model_digest: str
    model_name: str = ""
    precision: str = "fp32"
    expected_fpir: float | None = None  # FPIR the chosen threshold gave on the calibration data
    notes: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> Calibration:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known})

    def accepts(self, score: float) -> bool:
        """The decision this calibration makes for one score: alert when score >= threshold."""
        return bool(score >= self.threshold)

    def problems(self, gallery_size: int, model_digest: str) -> list[str]:
        """Why this calibration does not fit a gallery of ``gallery_size`` people on ``model_digest``."""
        out = []
        if model_digest != self.model_digest:
            out.append(
                f"calibrated for model {self.model_name or '?'} {self.model_digest[:12]}, "
                f"but the gallery uses {model_digest[:12]}: run `lookout calibrate` again"
            )
        if gallery_size > 0 and self.gallery_size > 0:
            factor = max(gallery_size / self.gallery_size, self.gallery_size / gallery_size)
            if factor >= REGROW_FACTOR:
                out.append(
                    f"calibrated for {self.gallery_size} people, the gallery has {gallery_size} "
                    f"({factor:.1f}x): the false-alert rate has moved, run `lookout calibrate` again"
                )
        return out


def fmr_for_fpir(fpir: float, gallery_size: int) -> float:
    """The 1:1 false-match rate that gives ``fpir`` over ``gallery_size`` independent comparisons."""
    return 1.0 - (1.0 - fpir) ** (1.0 / max(1, gallery_size))


def fpir_for_fmr(fmr: float, gallery_size: int) -> float:
    return 1.0 - (1.0 - fmr) ** max(1, gallery_size)


def calibrate(
    nonmated_max: np.ndarray,
    impostor: np.ndarray,
    gallery_size: int,
    target_fpir: float,
    model_digest: str,
    model_name: str = "",
    precision: str = "fp32",
    min_false_alerts: int = MIN_FALSE_ALERTS,
) -> Calibration:
    """Choose the threshold for ``target_fpir`` at ``gallery_size`` people (see the module text)."""
    if not 0 < target_fpir < 1:
        raise ConfigError(f"target FPIR must be between 0 and 1, not {target_fpir}")
    if gallery_size < 1:
        raise ConfigError("cannot calibrate for an empty gallery")
    nonmated_max = np.asarray(nonmated_max, np.float64)
    nonmated_max = nonmated_max[np.isfinite(nonmated_max)]
    impostor = np.asarray(impostor, np.float64)
    impostor = impostor[np.isfinite(impostor)]
    common: dict[str, Any] = dict(
        target_fpir=target_fpir,
        gallery_size=gallery_size,
        model_digest=model_digest,
        model_name=model_name,
        precision=precision,
    )
    need = math.ceil(min_false_alerts / target_fpir)
    if nonmated_max.size >= need:
        t = rates.threshold_at_rate(nonmated_max, target_fpir)
        return Calibration(
            threshold=t,
            probe_count=int(nonmated_max.size),
            method=METHODS[0],
            expected_fpir=rates.accepted_rate(nonmated_max, t),
            notes=[f"from the highest gallery score of each of {nonmated_max.size} faces of people not enrolled"],
            **common,
        )
    notes = [
        f"only {nonmated_max.size} non-mated probes (need {need} to read FPIR {target_fpir:g} directly): "
        f"used 1:1 impostor scores with FMR = 1-(1-FPIR)^(1/N) ~ FPIR/N"
    ]
    if impostor.size == 0:
        raise InputError(
            "calibration data", "no impostor scores: need faces of people not enrolled, or at least two enrolled people"
        )
    fmr = fmr_for_fpir(target_fpir, gallery_size)
    notes.append(f"target FMR {fmr:.3g} for {gallery_size} enrolled people")
    if rates.measurable(impostor.size, fmr):
        t = rates.threshold_at_rate(impostor, fmr)
        method = METHODS[1]
    else:
        mu, sd = float(impostor.mean()), float(impostor.std(ddof=1)) if impostor.size > 1 else 0.0
        t = mu + NormalDist().inv_cdf(1 - fmr) * sd
        t = max(t, float(np.nextafter(impostor.max(), math.inf)))
        method = METHODS[2]
        notes.append(
            f"only {impostor.size} impostor scores (need {math.ceil(1 / fmr)} to read FMR {fmr:.3g}): "
            f"extrapolated from a normal fit (mean {mu:.3f}, sd {sd:.3f}), never below the highest "
            f"impostor score seen. An estimate of the tail, not a measurement: collect more "
            f"faces of people not enrolled and calibrate again"
        )
    # Read off the data where it resolves the rate; for the extrapolated tail the fit gives the target by construction.
    expected = fpir_for_fmr(rates.accepted_rate(impostor, t), gallery_size) if method == METHODS[1] else target_fpir
    return Calibration(
        threshold=float(t), probe_count=int(impostor.size), method=method, expected_fpir=expected, notes=notes, **common
    )


def operator_view(fpir: float, passers_by_per_hour: float, hours_per_day: float = 24.0) -> dict:
    """What an FPIR means at one camera: expected false alerts per hour and per day."""
    per_hour = fpir * passers_by_per_hour
    return {
        "fpir": fpir,
        "passers_by_per_hour": passers_by_per_hour,
        "false_alerts_per_camera_hour": per_hour,
        "false_alerts_per_camera_day": per_hour * hours_per_day,
        "chance_of_any_false_alert_in_an_hour": 1.0 - (1.0 - fpir) ** passers_by_per_hour,
        "one_false_alert_every_hours": (1.0 / per_hour) if per_hour > 0 else None,
        "text": (
            f"At {passers_by_per_hour:g} passers-by an hour, expect about {per_hour:.3g} false alert(s) per "
            f"camera per hour ({per_hour * hours_per_day:.3g} a day)"
            + (f", one every {1 / per_hour:.3g} hours" if per_hour > 0 else "")
            + "."
        ),
    }


def write_calibration(calibration: Calibration, path: Path) -> Path:
    """Write the calibration as JSON (``path``: a file, or a folder to hold ``calibration.json``).

    Until the bundle code takes it into its manifest, this is the file a bundle
    folder carries beside its manifest.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CALIBRATION_FILE
    path.write_text(json.dumps(calibration.to_dict(), indent=2) + "\n")
    return path
