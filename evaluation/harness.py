"""The evaluation run: embedded data in, one document with every figure out."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from lookout import __version__
from lookout.evaluation import openset as os_
from lookout.evaluation import rates
from lookout.evaluation.bootstrap import trust
from lookout.evaluation.calibration import Calibration, calibrate, operator_view
from lookout.evaluation.datasets import Embedded
from lookout.evaluation.enrolment import enrolment_figures, failure_rate
from lookout.evaluation.groups import group_figures

DEFAULT_TARGET_FPIR = 1e-3
DEFAULT_PASSERS_BY = 500.0
SCHEMA = "lookout.eval/1"


def build_openset(data: Embedded) -> os_.OpenSet:
    scores = os_.person_scores(data.probe_vectors, data.gallery_vectors, data.gallery_owner, len(data.persons))
    truth, acquired = data.truth, data.acquired
    subjects = [p.subject for p in data.probes]
    tracks = [p.track for p in data.probes]
    if any(t is not None for t in tracks):
        scores, truth, acquired, subjects = os_.fuse_tracks(scores, truth, acquired, subjects, tracks)
        return os_.OpenSet(scores, truth, acquired, subjects, unit="track")
    return os_.OpenSet(scores, truth, acquired, subjects, unit="image")


def calibrate_on(data: Embedded, target_fpir: float, precision: str = "fp32") -> Calibration:
    """Calibrate a threshold for ``data``'s gallery from its own non-mated and impostor scores."""
    search = build_openset(data)
    return calibrate(
        search.nonmated_top_scores(),
        search.impostor_scores(),
        len(data.persons),
        target_fpir,
        data.model_digest,
        data.model_name,
        precision,
    )


def run_evaluation(
    data: Embedded,
    threshold: float | None = None,
    threshold_source: str = "given",
    target_fpir: float = DEFAULT_TARGET_FPIR,
    group_by: Sequence[str] = ("capture",),
    passers_by: float = DEFAULT_PASSERS_BY,
    verification: dict | None = None,
    n_boot: int = 1000,
    precision: str = "fp32",
    dataset: str = "",
) -> dict:
    search = build_openset(data)
    calibration = calibrate_on(data, target_fpir, precision)
    if threshold is None:
        threshold, threshold_source = calibration.threshold, "calibrated on this data"
    open_doc = os_.evaluate(search, threshold, n_boot=n_boot)
    genuine, impostor, nonmated = search.genuine_scores(), search.impostor_scores(), search.nonmated_top_scores()
    groups = []
    for attribute in group_by:
        labels = [p.labels.get(attribute) for p in data.probes]
        if search.unit == "track":
            labels = _track_labels(data, labels)
        if any(labels):
            groups.append(group_figures(search, labels, threshold, attribute))
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "lookout_version": __version__,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_1min": round(os.getloadavg()[0], 2),
        },
        "dataset": {
            "root": dataset,
            "description": data.description,
            "gallery_people": len(data.persons),  # enrolled: at least one photo passed the enrolment rule
            "people_not_enrolled": len(data.not_enrolled),
            "probes_of_people_not_enrolled": data.not_enrolled_probes,
            "gallery_photos": len(data.enrolment),
            "enrolled_vectors": len(data.gallery_vectors),
            "probes": len(data.probes),
        },
        "model": {"name": data.model_name, "digest": data.model_digest, "precision": precision},
        "threshold": {"value": threshold, "source": threshold_source},
        "calibration": calibration.to_dict(),
        "enrolment": enrolment_figures(data.enrolment),
        "acquisition": failure_rate(data.acquisition),
        "scores": {
            "genuine": rates.summary(genuine),
            "impostor": rates.summary(impostor),
            "nonmated_max": rates.summary(nonmated),
            "dprime": rates.dprime(genuine, impostor),
        },
        "openset": open_doc,
        "groups": groups,
        "verification": verification,
        "operator": _operator(calibration, open_doc, passers_by),
        "raw": {
            "genuine": genuine.tolist(),
            "impostor": impostor.tolist(),
            "nonmated_max": nonmated.tolist(),
            "det": search.det(),
            "probes": [
                {
                    "item": p.item,
                    "subject": p.subject,
                    "enrolled_as": p.person,
                    "source": p.source,
                    "acquired": bool(a),
                    "rank": int(r) if r < 10**6 else None,
                    "true_score": _f(ts),
                    "top_score": _f(tp),
                    "top_person": data.persons[int(pp)] if math.isfinite(tp) else None,
                }
                for p, a, r, ts, tp, pp in zip(
                    data.probes, data.acquired, search.rank, search.true_score, search.top_score, search.top_person
                )
            ]
            if search.unit == "image"
            else [],
        },
    }
    doc["trust"] = trust_statements(doc)
    return clean(doc)


def _operator(calibration: Calibration, open_doc: dict, passers_by: float) -> dict:
    """False alerts per camera-hour: as calibrated, and the worst this data cannot rule out."""
    expected = calibration.expected_fpir if calibration.expected_fpir is not None else calibration.target_fpir
    doc = {"calibrated": operator_view(expected, passers_by)}
    t = open_doc["at_threshold"]["fpir_trust"]
    if t["trials"]:
        bound = t.get("upper_95") if t["errors"] == 0 else None
        doc["measured"] = operator_view(t["rate"], passers_by)
        if bound is not None:
            doc["data_cannot_rule_out"] = operator_view(bound, passers_by)
    return doc


def _track_labels(data: Embedded, labels: list) -> list:
    seen: dict[str, object] = {}
    out = []
    for i, p in enumerate(data.probes):
        key = p.track if p.track is not None else f"\0{i}"
        if key not in seen:
            seen[key] = labels[i]
            out.append(labels[i])
    return out


def _f(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def trust_statements(doc: dict) -> list[str]:
    """Plain sentences on which figures this data can and cannot support."""
    o = doc["openset"]
    out = []
    for key, what in (("fnir_trust", "miss rate (FNIR)"), ("fpir_trust", "false-alert rate (FPIR)")):
        t = o["at_threshold"][key]
        out.append(f"The {what} at the threshold: {t['note']}.")
    out.append(f"Rank-1: {o['rank1_trust']['note']}.")
    for entry in o["fnir_at_fpir"]:
        if not entry["measurable"]:
            out.append(f"FNIR at FPIR {entry['target_fpir']:g}: not measurable, {entry['reason']}.")
    cal = doc["calibration"]
    if cal["method"] != "nonmated-max":
        out.append(
            f"The threshold was calibrated by the fallback method '{cal['method']}': " + "; ".join(cal["notes"]) + "."
        )
    if o["people_in_probes"] < 30:
        out.append(
            f"Only {o['people_in_probes']} different people are searched: confidence intervals resampled "
            f"over so few people are themselves rough."
        )
    return out


def clean(value):
    """JSON-safe: numpy to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    return value


__all__ = ["DEFAULT_TARGET_FPIR", "build_openset", "calibrate_on", "run_evaluation", "trust"]
