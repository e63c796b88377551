"""The device's own threshold (``recognition.threshold``, ``--set``, a Greengrass live update) under the same rule
as an operator's ``gallery build --threshold`` (attack finding A31).

A threshold means nothing without the gallery's size: an override is judged against the gallery in use by the
FPIR it predicts there (the model's calibration, ``lookout.gallery.threshold.predict_at``). One predicted more
than ``FAR_ABOVE_TARGET`` times the gallery's target is refused unless ``recognition.accept_fpir: true``: at
start (the device does not start), at a swap to a bigger gallery (the override is dropped for the gallery's
own threshold, with an error line), as a live update (the update's threshold is not applied). The same for an
override predicted to miss half the enrolled people or more (FNIR, attack finding A41: 0.99 never matches anyone)
unless ``recognition.accept_fnir: true``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lookout.gallery.reader import GalleryReader
from lookout.gallery.threshold import DEFAULT_TARGET_FPIR, operator_threshold_problem, predict_at

ACCEPT_HINT = "check recognition.threshold, or set recognition.accept_fpir: true to use it anyway"
# An override predicted to miss at least this share of the enrolled is refused unless recognition.accept_fnir.
MAX_FNIR = 0.5


@dataclass(frozen=True)
class ThresholdJudgement:
    threshold: float  # the threshold judged (the override, or the gallery's own)
    override: bool  # True: recognition.threshold; False: the gallery's
    predicted_fpir: float | None  # at the gallery's size; None when it cannot be predicted
    target_fpir: float
    problem: str | None  # why the override needs recognition.accept_fpir; None for the gallery's own or a fine one
    predicted_fnir: float | None = None
    fnir_problem: str | None = None  # why the override needs recognition.accept_fnir

    def describe(self) -> str:
        which = "override (recognition.threshold)" if self.override else "the gallery's"
        fpir = f"predicted FPIR {self.predicted_fpir:.2g}" if self.predicted_fpir is not None else "FPIR unknown"
        fnir = f", FNIR {self.predicted_fnir:.0%}" if self.predicted_fnir is not None else ""
        return f"{self.threshold:g}, {which}: {fpir}{fnir} at this gallery's size (target FPIR {self.target_fpir:g})"

    def refusal(self, accept_fpir: bool, accept_fnir: bool) -> str | None:
        """Why the override cannot be used with these acceptances; None when it can."""
        if self.problem and not accept_fpir:
            return self.problem
        if self.fnir_problem and not accept_fnir:
            return self.fnir_problem
        return None


def judge(override: float | None, gallery: GalleryReader) -> ThresholdJudgement:
    """The threshold the device will use against ``gallery`` and what it predicts there."""
    manifest = gallery.manifest
    basis = manifest.threshold.basis
    target = float(basis.get("target_fpir", DEFAULT_TARGET_FPIR))
    if override is None:
        fpir, fnir = basis.get("predicted_fpir"), basis.get("predicted_fnir")
        return ThresholdJudgement(gallery.threshold, False, fpir, target, None, fnir)
    counts = manifest.counts
    prediction = predict_at(
        override, gallery.model_name, None, counts.get("persons", 0), counts.get("photos", 0), None, target
    )
    problem = operator_threshold_problem(prediction, ACCEPT_HINT)
    fnir = prediction.get("predicted_fnir")
    fnir_problem = None
    if fnir is not None and fnir >= MAX_FNIR:
        fnir_problem = (
            f"predicted FNIR {fnir:.0%}: the device would miss that share of the people in the gallery; check "
            f"recognition.threshold, or set recognition.accept_fnir: true to use it anyway"
        )
    return ThresholdJudgement(override, True, prediction.get("predicted_fpir"), target, problem, fnir, fnir_problem)
