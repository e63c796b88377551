"""Confidence intervals by resampling people, and whether a figure is trustworthy yet.

Errors made on the same person are not independent (one hard-to-recognise face
fails every photo), so intervals resample *people* with replacement, carrying
all of each sampled person's items, not single images.

A rate measured from few errors is mostly noise. Following Doddington's rule
of 30, a figure backed by fewer than 30 observed errors is flagged as not yet
trustworthy; with no errors at all, the rule of three gives the 95% upper
bound ``3 / n``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

MIN_ERRORS = 30


def trust(errors: int, trials: int) -> dict:
    """How far a rate measured as ``errors / trials`` can be trusted, in plain words."""
    rate = errors / trials if trials else None
    doc: dict = {
        "errors": int(errors),
        "trials": int(trials),
        "rate": rate,
        "trustworthy": bool(trials and errors >= MIN_ERRORS),
    }
    if not trials:
        doc["note"] = "no trials: not measured"
    elif errors == 0:
        doc["upper_95"] = min(1.0, 3.0 / trials)
        doc["note"] = (
            f"no errors in {trials} trials; the true rate could still be up to "
            f"{doc['upper_95']:.3g} (rule of three): not yet trustworthy"
        )
    elif errors < MIN_ERRORS:
        doc["note"] = f"only {errors} error(s) observed (fewer than {MIN_ERRORS}): not yet trustworthy"
    else:
        doc["note"] = f"{errors} errors observed: enough to trust the figure within its interval"
    return doc


def cluster_indices(subjects: Sequence[str]) -> list[np.ndarray]:
    """Item indices grouped by subject (person), in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(subjects):
        groups.setdefault(s, []).append(i)
    return [np.asarray(v, np.int64) for v in groups.values()]


def bootstrap_ci(
    subjects: Sequence[str],
    statistic: Callable[[np.ndarray], float | None],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict | None:
    """Percentile interval of ``statistic(indices)`` over resamples of people.

    ``statistic`` receives item indices (with repeats for a person drawn more
    than once) and returns a number, or None where it is undefined for that
    resample (those resamples are skipped).
    """
    clusters = cluster_indices(subjects)
    if len(clusters) < 2 or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(clusters), len(clusters))
        value = statistic(np.concatenate([clusters[j] for j in pick]))
        if value is not None and np.isfinite(value):
            values.append(value)
    if len(values) < n_boot // 2:
        return None
    lo, hi = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {
        "low": float(lo),
        "high": float(hi),
        "level": level,
        "resamples": len(values),
        "people": len(clusters),
        "by": "people",
    }
