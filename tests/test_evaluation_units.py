"""Evaluation arithmetic on tiny hand-made cases: open-set rates, verification, trust, groups, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lookout.evaluation import rates
from lookout.evaluation.bootstrap import bootstrap_ci, trust
from lookout.evaluation.calibration import Calibration, calibrate, fmr_for_fpir, operator_view
from lookout.evaluation.groups import group_figures
from lookout.evaluation.openset import OpenSet, evaluate, fuse_tracks, person_scores
from lookout.evaluation.verification import best_accuracy, eer, tar_at_far
from lookout.evaluation.verification import evaluate as verify


def _openset() -> OpenSet:
    # 2 enrolled people; probes: 3 mated (A, A, B), 2 non-mated.
    scores = np.array(
        [
            [0.9, 0.2],  # A, rank 1, 0.9
            [0.5, 0.6],  # A, rank 2 (B scores higher): a miss at any threshold, wrong person above 0.6
            [0.1, 0.7],  # B, rank 1, 0.7
            [0.4, 0.3],  # stranger, top 0.4
            [0.2, 0.65],  # stranger, top 0.65
        ]
    )
    truth = np.array([0, 0, 1, -1, -1])
    return OpenSet(scores, truth, np.ones(5, bool), ["a", "a", "b", "s1", "s2"])


def test_openset_rates_by_hand() -> None:
    o = _openset()
    assert o.rank.tolist()[:3] == [1, 2, 1]
    assert o.fnir(0.8) == pytest.approx(2 / 3)  # only the 0.9 probe is a hit
    assert o.fnir(0.6) == pytest.approx(1 / 3)
    assert o.fpir(0.6) == pytest.approx(1 / 2)
    assert o.fpir(0.7) == 0.0
    assert o.wrong_person_rate(0.55) == pytest.approx(1 / 3)
    assert o.rank_hit_rate(1) == pytest.approx(2 / 3)
    assert o.rank_hit_rate(2) == 1.0
    assert sorted(o.genuine_scores().tolist()) == [0.5, 0.7, 0.9]
    assert sorted(o.impostor_scores().tolist()) == sorted([0.2, 0.6, 0.1, 0.4, 0.3, 0.2, 0.65])
    # FPIR target 0.5 over 2 strangers: one false alert allowed, threshold just above the 2nd highest (0.4).
    t = o.threshold_for_fpir(0.5)
    assert 0.4 < t < 0.4001 and o.fpir(t) == 0.5


def test_failed_acquisition_is_a_miss_and_not_an_alert() -> None:
    o = OpenSet(np.array([[0.9, 0.1], [0.9, 0.9]]), np.array([0, -1]), np.array([False, False]), ["a", "s"])
    assert o.fnir(0.5) == 1.0 and o.fpir(0.5) == 0.0 and o.rank_hit_rate(1) is None


def test_evaluate_says_what_is_not_measurable() -> None:
    doc = evaluate(_openset(), 0.6, n_boot=50)
    assert doc["mated_probes"] == 3 and doc["nonmated_probes"] == 2
    assert all(not e["measurable"] for e in doc["fnir_at_fpir"])
    assert "needs at least 100 non-mated probes" in doc["fnir_at_fpir"][0]["reason"]
    assert doc["at_threshold"]["fnir_trust"]["trustworthy"] is False
    assert doc["fnir_at_zero_false_alerts"]["fpir_upper_95"] == 1.0


def test_person_scores_take_the_best_photo() -> None:
    gallery = np.eye(3, dtype=np.float32)
    probes = np.array([[0.6, 0.8, 0.0]], np.float32)
    s = person_scores(probes, gallery, np.array([0, 0, 1]), 2)
    assert s.tolist() == [[pytest.approx(0.8), pytest.approx(0.0)]]


def test_track_fusion_takes_max_over_frames() -> None:
    scores = np.array([[0.3, 0.1], [0.8, 0.2], [0.1, 0.5]])
    fused, truth, _acq, subj = fuse_tracks(
        scores, np.array([0, 0, -1]), np.ones(3, bool), ["a", "a", "s"], ["t1", "t1", None]
    )
    assert fused.tolist() == [[0.8, 0.2], [0.1, 0.5]] and truth.tolist() == [0, -1] and subj == ["a", "s"]


def test_verification_by_hand() -> None:
    # genuine 0.9 0.8 0.4 ; impostor 0.5 0.3 0.2 0.1
    scores = np.array([0.9, 0.8, 0.4, 0.5, 0.3, 0.2, 0.1])
    same = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    acc, t = best_accuracy(scores, same)
    # Threshold 0.8: 2 TP + 4 TN = 6/7; threshold 0.4: 3 TP + 3 TN (0.5 accepted) = 6/7; tie -> the higher.
    assert acc == pytest.approx(6 / 7) and t == pytest.approx(0.8)
    assert eer(scores, same) == pytest.approx((1 / 4 + 1 / 3) / 2)  # at 0.5: FAR 1/4, FRR 1/3 (closest pair)
    with_100 = tar_at_far(np.concatenate([scores, np.full(96, 0.0)]), np.concatenate([same, np.zeros(96, bool)]), 1e-2)
    # 100 impostors, 1 may pass: threshold just above the 2nd highest impostor (0.3) -> TAR 3/3 (0.4 passes).
    assert with_100["measurable"] and with_100["tar"] == 1.0 and with_100["far"] == pytest.approx(0.01)
    doc = verify(scores, same, n_boot=0)
    assert doc["tar_at_far"][0]["measurable"] is False and doc["genuine_pairs"] == 3


def test_trust_and_rule_of_three() -> None:
    assert trust(0, 300)["upper_95"] == pytest.approx(0.01)
    assert trust(5, 100)["trustworthy"] is False and "fewer than 30" in trust(5, 100)["note"]
    assert trust(30, 100)["trustworthy"] is True


def test_bootstrap_resamples_people_not_images() -> None:
    # Person a: 10 images all wrong; person b: 1 image right. Resampling images would rarely give 0 errors.
    values = np.array([1.0] * 10 + [0.0])
    subjects = ["a"] * 10 + ["b"]
    ci = bootstrap_ci(subjects, lambda idx: float(values[idx].mean()), n_boot=400)
    assert ci["people"] == 2 and ci["low"] == 0.0 and ci["high"] == 1.0


def test_group_ratios() -> None:
    o = _openset()
    g = group_figures(o, ["x", "x", "y", "x", "y"], 0.6, "label")
    assert g["groups"]["x"]["fnir"] == pytest.approx(0.5) and g["groups"]["y"]["fnir"] == 0.0
    assert g["max_min_ratio"]["fnir"]["ratio"] is None  # a zero group: unbounded
    assert g["groups"]["y"]["fpir"] == 1.0 and g["groups"]["x"]["fpir"] == 0.0


def test_calibration_methods() -> None:
    rng = np.random.default_rng(0)
    many = rng.normal(0.3, 0.1, 5000)
    c = calibrate(many, many, 100, 1e-2, "d" * 64)
    assert c.method == "nonmated-max" and c.expected_fpir <= 1e-2
    few = calibrate(many[:50], many, 10, 1e-2, "d" * 64)
    assert few.method == "impostor-1to1" and "FPIR/N" in few.notes[0]
    assert fmr_for_fpir(1e-2, 10) == pytest.approx(1e-3, rel=0.01)
    tail = calibrate(many[:5], many[:100], 1000, 1e-3, "d" * 64)
    assert tail.method == "impostor-1to1-normal-tail" and tail.threshold > many[:100].max()
    assert tail.threshold > few.threshold


def test_calibration_problems_and_operator_view() -> None:
    c = Calibration(0.6, 1e-3, 100, 7, "impostor-1to1", "a" * 64, "facenet")
    assert c.problems(100, "a" * 64) == []
    assert "run `lookout calibrate` again" in c.problems(250, "a" * 64)[0]
    assert "calibrated for model" in c.problems(100, "b" * 64)[0]
    view = operator_view(1e-3, 500)
    assert view["false_alerts_per_camera_hour"] == pytest.approx(0.5)
    assert view["chance_of_any_false_alert_in_an_hour"] == pytest.approx(1 - (1 - 1e-3) ** 500)
    assert c.accepts(0.6) and not c.accepts(0.59)


def test_threshold_at_rate_edges() -> None:
    assert rates.threshold_at_rate(np.array([]), 0.1) == -math.inf
    assert rates.threshold_at_rate(np.array([0.5]), 1.0) == -math.inf
    assert rates.measurable(100, 1e-2) and not rates.measurable(99, 1e-2)
