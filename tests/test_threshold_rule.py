"""The threshold a gallery ships with: chosen for a target FPIR at the gallery's own size."""

from __future__ import annotations

import numpy as np
import pytest

from lookout.gallery.threshold import GalleryScores, ModelCalibration, choose_threshold, model_calibration
from lookout.model_store.catalog import ALL_MODELS


def test_every_embedder_in_the_catalog_has_a_calibration() -> None:
    for spec in ALL_MODELS.values():
        if spec.kind == "embedder":
            cal = model_calibration(spec.name)
            assert cal is not None and len(cal.points) >= 5, spec.name
            fmrs = [f for _, f, _ in cal.points]
            assert fmrs == sorted(fmrs, reverse=True), "FMR falls as the threshold rises"


def test_threshold_rises_with_gallery_size_and_meets_the_target_by_the_formula() -> None:
    cal = model_calibration("face-reidentification-retail-0095")
    assert cal is not None
    chosen = []
    for photos in (10, 400, 24_600):
        t, basis = choose_threshold("face-reidentification-retail-0095", None, photos, photos, None, 0.01)
        assert basis["predicted_fpir"] <= 0.0101
        assert 1 - (1 - cal.fmr_at(t)) ** photos <= 0.0101
        chosen.append(t)
    assert chosen[0] < chosen[1] < chosen[2]
    _, big = choose_threshold("face-reidentification-retail-0095", None, 14_400, 24_600, None, 0.01)
    assert big["model_calibration"]["extrapolated_beyond_measured"] is True  # 4e-7 per comparison: beyond 2e-6


def test_interpolation_is_log_linear_in_fmr() -> None:
    cal = ModelCalibration("test", ((0.5, 1e-2, 0.1), (0.7, 1e-4, 0.3)))
    t, extrapolated = cal.threshold_for_fmr(1e-3)
    assert t == pytest.approx(0.6) and not extrapolated
    t, extrapolated = cal.threshold_for_fmr(1e-6)
    assert t == pytest.approx(0.9) and extrapolated
    assert cal.fmr_at(0.6) == pytest.approx(1e-3)
    assert cal.fnmr_at(0.6) == pytest.approx(0.2)


def test_the_gallerys_own_scores_raise_the_threshold_when_they_are_worse_than_the_model_table() -> None:
    """A gallery whose different people score high against each other (look-alikes, duplicates) gets a
    higher threshold than the model's table alone would give, and the basis says which estimate won."""
    rng = np.random.default_rng(0)
    persons, dim = 1200, 64
    centres = rng.normal(size=(persons, dim))
    centres[1::2] = centres[::2] + 0.3 * rng.normal(size=(persons // 2, dim))  # every person has a near twin
    vectors = np.repeat(centres, 2, axis=0) + 0.2 * rng.normal(size=(2 * persons, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    owners = np.repeat(np.arange(persons), 2)
    own = GalleryScores.from_vectors(vectors.astype(np.float32), owners)
    assert len(own.best_other) == len(vectors) and len(own.best_mate) == len(vectors)
    t, basis = choose_threshold("face-reidentification-retail-0095", None, persons, len(vectors), own, 0.01)
    assert basis["method"].endswith(": the gallery's own scores")
    assert t > basis["model_calibration"]["threshold"]
    assert np.mean(own.best_other >= t) <= 0.01
    assert basis["predicted_fnir_from"].startswith("the gallery's own mates")


def test_too_few_photos_and_no_calibration_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no calibration for model nope"):
        choose_threshold("nope", None, 5, 5, None, 0.01)
