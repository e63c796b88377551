"""The threshold a gallery ships with: chosen for a target FPIR at the gallery's own size."""

from __future__ import annotations

import numpy as np
import pytest

from lookout.gallery.threshold import (
    GalleryScores,
    ModelCalibration,
    choose_threshold,
    describe,
    model_calibration,
    most_allowed,
    own_decides_from,
    share_upper_bound,
)
from lookout.model_store.catalog import ALL_MODELS

OMZ = "face-reidentification-retail-0095"


def _gallery(persons: int, photos_each: int, dim: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors: ``persons`` random centres, ``photos_each`` noisy photos of each."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(persons, dim))
    vectors = np.repeat(centres, photos_each, axis=0) + spread * rng.normal(size=(persons * photos_each, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), np.repeat(np.arange(persons), photos_each)


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
    assert basis["method"].startswith("the gallery's own scores")
    assert t > basis["model_calibration"]["threshold"]
    assert np.mean(own.best_other >= t) <= 0.01 / 1.5
    assert basis["predicted_fnir_from"].startswith("the gallery's own mates")


def test_the_upper_bound_is_clopper_pearson() -> None:
    assert share_upper_bound(0, 100, 0.9) == pytest.approx(1 - 0.1 ** (1 / 100), rel=1e-6)  # (1 - p)^n = 0.1
    assert share_upper_bound(5, 1500, 0.9) == pytest.approx(0.0061743, rel=1e-4)  # scipy beta.ppf(0.9, 6, 1495)
    assert share_upper_bound(10, 10) == 1.0
    for n in (400, 1500, 5550, 24_600):
        allowed = most_allowed(n, 0.01 / 1.5)
        assert share_upper_bound(allowed, n) <= 0.01 / 1.5 < share_upper_bound(allowed + 1, n), n
    assert most_allowed(100, 0.01) == -1  # 100 photos cannot show a 1% share at 90%: not even zero of them
    assert own_decides_from(0.01, 1.5) == 1500 and own_decides_from(0.01, 1.0) == 1000


def test_a_big_gallery_with_a_lighter_tail_than_the_table_decides_from_its_own_scores() -> None:
    """3,000 people (6,000 photos) whose strangers resemble nobody much: the table (faces-scale) would ask for
    a far higher threshold; the gallery's own bound decides, and the basis shows the bound and the safety."""
    vectors, owners = _gallery(3000, 2, 256, 0.5)
    own = GalleryScores.from_vectors(vectors, owners)
    t, basis = choose_threshold(OMZ, None, 3000, len(vectors), own, 0.01)
    mine = basis["gallery_own"]
    assert basis["method"].startswith("the gallery's own scores") and mine["weight"] == 1
    assert t < basis["model_calibration"]["threshold"]
    assert mine["safety_factor"] == 1.5 and mine["upper_bound_90"] <= 0.01 / 1.5
    assert mine["photos_at_or_above"] == np.sum(own.best_other >= t) and t == mine["threshold"]
    assert np.mean(own.best_other >= t) == basis["predicted_fpir"] <= 0.01 / 1.5
    assert "upper bound" in describe(t, basis) and "target / 1.5" in describe(t, basis)


def test_no_jump_down_where_the_gallerys_own_scores_take_over() -> None:
    """Growing one gallery photo by photo across the switch (1,500 photos at 1%): the threshold does not
    drop at the switch; the table's floor fades out over one doubling, then the own estimate alone decides."""
    vectors, owners = _gallery(1800, 2, 256, 0.5)
    chosen = {}
    for photos in (1400, 1499, 1500, 1600, 2121, 3000, 3600):
        own = GalleryScores.from_vectors(vectors[:photos], owners[:photos])
        chosen[photos] = choose_threshold(OMZ, None, photos // 2, photos, own, 0.01)
    t = {n: c[0] for n, c in chosen.items()}
    table = {n: c[1]["model_calibration"]["threshold"] for n, c in chosen.items()}
    own_t = {n: c[1]["gallery_own"]["threshold"] for n, c in chosen.items()}
    assert t[1400] == pytest.approx(table[1400], abs=1.5e-4) and t[1499] == pytest.approx(table[1499], abs=1.5e-4)
    assert t[1500] >= t[1499]  # at the switch the table is still the floor
    assert t[1500] > t[1600] > t[2121] > t[3000]  # then it fades: a little lower at each size
    assert t[2121] == pytest.approx((table[2121] + own_t[2121]) / 2, abs=2.5e-4)  # half way (log2 scale)
    assert t[3000] == pytest.approx(own_t[3000], abs=1.5e-4) and t[3600] == pytest.approx(own_t[3600], abs=1.5e-4)


def test_without_a_calibration_a_big_enough_gallery_still_chooses_from_its_own_scores() -> None:
    """A model nobody measured: its own scores decide from 2,000 photos, with the cautious safety factor 2."""
    vectors, owners = _gallery(1100, 2, 64, 0.5)
    own = GalleryScores.from_vectors(vectors, owners)
    t, basis = choose_threshold("nope", None, 1100, len(vectors), own, 0.01)
    assert "model_calibration" not in basis and basis["method"].startswith("the gallery's own scores")
    assert basis["gallery_own"]["safety_factor"] == 2.0 and np.mean(own.best_other >= t) <= 0.01 / 2
    with pytest.raises(ValueError, match="needs 2000"):
        choose_threshold("nope", None, 950, 1900, GalleryScores.from_vectors(vectors[:1900], owners[:1900]), 0.01)


def test_each_model_brings_its_own_measured_safety_factor() -> None:
    """FaceNet's gallery-own share understated strangers' FPIR more on faces-scale (bystander faces): 2.0."""
    factors = {name: model_calibration(name).own_safety_factor for name in ("facenet", "dlib-resnet", OMZ)}  # type: ignore[union-attr]
    assert factors == {"facenet": 2.0, "dlib-resnet": 1.5, OMZ: 1.5}
    vectors, owners = _gallery(1000, 2, 64, 0.5)
    own = GalleryScores.from_vectors(vectors, owners)
    _, basis = choose_threshold("facenet", None, 1000, len(vectors), own, 0.01)
    assert basis["gallery_own"]["safety_factor"] == 2.0 and basis["gallery_own"]["decides_from_photos"] == 2000


def test_too_few_photos_and_no_calibration_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no calibration for model nope"):
        choose_threshold("nope", None, 5, 5, None, 0.01)
