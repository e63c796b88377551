"""`lookout bench accuracy`: embedders side by side on one folder-per-person set (faces-dev here,
faces-scale in the docs), embeddings cached once per embedder, the threshold build would pick."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookout.cli import main
from lookout.evaluation.scale import (
    FaceSet,
    Split,
    fnir,
    fpir,
    impostor_scores,
    projected_own_threshold,
    threshold_for_fpir,
)
from lookout.gallery.threshold import GalleryScores

pytestmark = pytest.mark.shared


@pytest.mark.slow  # two embedders over faces-dev: 4-12 s
def test_bench_accuracy_prints_embedders_side_by_side(faces_dev, model_store, tmp_path, capsys) -> None:
    embedders = "face-reidentification-retail-0095,dlib-resnet"
    args = ["bench", "accuracy", str(faces_dev), "--embedders", embedders, "--splits", "2", "--device", "CPU"]
    args += ["--cache", str(tmp_path / "cache"), "--json", str(tmp_path / "figures.json"), "--model-dir"]
    assert main([*args, str(model_store.root)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "face-reidentification-retail-0095" in line)
    assert "dlib-resnet" in header
    rows = ("rank-1", "threshold build picks", "FNIR there (FTE as misses)", "FPIR extrapolated to N")
    for row in (*rows, "at N: own-score rule", "strangers' FPIR / gallery's own share"):
        assert row in out, row
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert [f["embedder"] for f in figures] == embedders.split(",")
    for f in figures:
        assert f["rank1"] >= 0.8 and f["fte"] == 0.0  # faces-dev: 40 clean identity photos
        assert f["at_n"]["persons"] == 14_400 and f["at_n"]["threshold"] > f["build_threshold"]
        assert f["at_n"]["own_rule_photos_needed"] < 1  # 40 photos cannot speak for 24,600: said, not hidden
    assert len(list((tmp_path / "cache").glob("faces-*.npz"))) == 2  # each embedder's faces embedded once


def test_open_set_rates_on_a_hand_made_split() -> None:
    split = Split(
        mated=np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.2]]),
        truth=np.array([0, 1, 1]),
        nonmated=np.array([[0.3, 0.2], [0.55, 0.1], [0.1, 0.0], [0.2, 0.45]]),
        enrol_photos=2,
        enrolled_photos=2,
        persons=2,
    )
    assert fnir(split, 0.5) == pytest.approx(1 / 3)  # the third is the wrong person first
    assert fpir(split, 0.5) == pytest.approx(1 / 4)
    t = threshold_for_fpir(split, 0.25)
    assert fpir(split, t) <= 0.25 and 0.45 < t <= 0.55


def test_impostor_scores_are_every_different_person_pair_of_subject_faces() -> None:
    vectors = np.eye(4, dtype=np.float32)
    vectors[1] = vectors[0]  # person 0's two photos are identical: a genuine pair, not counted
    data = FaceSet(["a", "b", "c"], np.array([0, 0, 1, 2]), np.arange(4), np.array([0, 1, 2, -1]), vectors)
    scores = impostor_scores(data)
    assert len(scores) == 2  # (0,2) and (1,2); photo 3 failed to enrol


def test_the_own_rule_projected_to_a_bigger_gallery_needs_a_smaller_share_of_this_one() -> None:
    """A gallery 10x this set's size allows ~0.6% of its photos; this set then needs ~1/10 of that."""
    scores = GalleryScores(best_other=np.linspace(0.0, 1.0, 10_000, dtype=np.float32), best_mate=np.zeros(0))
    t, needed = projected_own_threshold(scores, 100_000, 0.01, safety=1.5)
    assert 5 < needed < 7  # 0.6% of 10,000 photos / 10
    assert np.sum(scores.best_other >= t) == int(needed)
    t_small, needed_small = projected_own_threshold(scores, 10_000, 0.01, safety=1.5)
    assert needed_small > 50 and t_small < t
