"""Per-group figures at one global threshold, so differentials between groups are visible.

A deployment runs one threshold for everyone, so the question is how the error
rates *at that threshold* differ between groups of people (or of capture
conditions). NIST IR 8280 found false positives 2-5x higher for women and
10-100x higher for some demographic groups in many algorithms; a max/min ratio
far from 1 here is that kind of differential.

Groups come from any label column (``--labels FILE.csv --group-by COLUMN``);
a probe without a value for the column is left out of that breakdown.
Per group: FNIR, FPIR (needs non-mated probes in the group), the 1:1 false
match rate of the group's faces against enrolled people who are not them
(FMR, available even without non-mated probes), rank-1, and the
failure-to-acquire rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lookout.evaluation.bootstrap import trust
from lookout.evaluation.openset import OpenSet

FIGURES = ("fnir", "fpir", "fmr", "rank1", "fta")


def _fmr(openset: OpenSet, idx: np.ndarray, threshold: float) -> tuple[int, int]:
    scores = openset.scores[idx]
    mask = np.ones_like(scores, bool)
    mated_rows = np.where(openset.mated[idx])[0]
    mask[mated_rows, openset.truth[idx][mated_rows]] = False
    mask &= openset.acquired[idx][:, None]
    impostor = scores[mask]
    return int((impostor >= threshold).sum()), int(impostor.size)


def group_figures(openset: OpenSet, labels: Sequence[str | None], threshold: float, attribute: str) -> dict:
    """Figures per value of ``labels`` (one per probe), and the max/min ratio of each figure."""
    labels = list(labels)
    values = sorted({v for v in labels if v not in (None, "")})
    groups: dict[str, dict[str, Any]] = {}
    for value in values:
        idx = np.asarray([i for i, v in enumerate(labels) if v == value], np.int64)
        mated = idx[openset.mated[idx]]
        non = idx[~openset.mated[idx]]
        fm, fm_n = _fmr(openset, idx, threshold)
        misses = int(openset.misses(threshold, idx).sum())
        alerts = int(openset.false_alerts(threshold, idx).sum())
        groups[value] = {
            "probes": int(idx.size),
            "mated": int(mated.size),
            "nonmated": int(non.size),
            "people": len({openset.subjects[i] for i in idx}),
            "fnir": openset.fnir(threshold, idx),
            "fnir_trust": trust(misses, int(mated.size)),
            "fpir": openset.fpir(threshold, idx),
            "fpir_trust": trust(alerts, int(non.size)),
            "fmr": fm / fm_n if fm_n else None,
            "fmr_trust": trust(fm, fm_n),
            "rank1": openset.rank_hit_rate(1, idx),
            "fta": float((~openset.acquired[idx]).mean()),
        }
    ratios: dict[str, dict[str, Any]] = {}
    for name in FIGURES:
        got = [g[name] for g in groups.values() if g[name] is not None]
        if len(got) < 2:
            ratios[name] = {"ratio": None, "note": "fewer than two groups have this figure"}
            continue
        hi, lo = max(got), min(got)
        if lo > 0:
            ratios[name] = {"ratio": hi / lo, "max": hi, "min": lo}
        elif hi == 0:
            ratios[name] = {"ratio": 1.0, "max": 0.0, "min": 0.0, "note": "zero in every group"}
        else:
            ratios[name] = {
                "ratio": None,
                "max": hi,
                "min": 0.0,
                "note": "some group has none: the ratio is unbounded on this data",
            }
    return {"attribute": attribute, "threshold": threshold, "groups": groups, "max_min_ratio": ratios}
