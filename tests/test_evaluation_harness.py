"""`lookout eval` on faces-dev: the JSON and the readable report, checked for structure and consistency
(not for any particular number), and 1:1 verification on a pairs file built from faces-dev."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lookout.cli
from lookout.evaluation.cli import run_pairs
from lookout.evaluation.verification import best_accuracy, write_pairs

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def lookout_main(argv: list[str], monkeypatch) -> int:
    return lookout.cli.main(argv)


@pytest.fixture(scope="module")
def labels(tmp_path_factory) -> Path:
    # A made-up label per identity, to exercise a user-named group column (not a real attribute).
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    path.write_text(
        "identity,cohort\namy,one\nbernadette,one\nhoward,one\nleonard,one\n"
        "penny,two\nraj,two\nsheldon,two\nstuart,two\n"
    )
    return path


def test_eval_writes_consistent_json_and_report(faces_dev, model_store, labels, tmp_path, monkeypatch, capsys):
    out = tmp_path / "eval"
    code = lookout_main(
        [
            "eval",
            str(faces_dev),
            "--out",
            str(out),
            "--labels",
            str(labels),
            "--group-by",
            "cohort",
            "--bootstrap",
            "100",
            "--model-dir",
            str(model_store.root),
            "--embedder",
            "facenet",
        ],
        monkeypatch,
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "FNIR" in printed and "report:" in printed
    doc = json.loads((out / "eval.json").read_text())
    o, at = doc["openset"], doc["openset"]["at_threshold"]

    # The faces-dev protocol: 8 people, one photo each held out, 22 group faces, 7 strangers.
    assert doc["dataset"]["gallery_people"] == 8 and doc["dataset"]["gallery_photos"] == 32
    assert o["mated_probes"] == 8 + 22 and o["nonmated_probes"] == 7
    assert doc["acquisition"]["attempts"] == 37

    # Internal consistency.
    assert at["fnir"] == pytest.approx(at["fnir_trust"]["errors"] / o["mated_probes"])
    assert at["fpir"] == pytest.approx(at["fpir_trust"]["errors"] / o["nonmated_probes"])
    probes = doc["raw"]["probes"]
    mated = [p for p in probes if p["enrolled_as"]]
    hits = [p for p in mated if p["acquired"] and p["rank"] == 1 and p["true_score"] >= doc["threshold"]["value"]]
    assert at["fnir"] == pytest.approx(1 - len(hits) / len(mated))
    found = [p for p in mated if p["acquired"]]
    assert o["rank1"] == pytest.approx(sum(p["rank"] == 1 for p in found) / len(found))
    assert doc["scores"]["genuine"]["count"] == len(found)
    assert doc["threshold"]["value"] == doc["calibration"]["threshold"]
    assert doc["calibration"]["method"] != "nonmated-max"  # 7 strangers are far too few, and it says so
    assert all(not e["measurable"] for e in o["fnir_at_fpir"])  # 7 non-mated probes resolve none of the targets
    det = doc["raw"]["det"]
    # DET, thresholds high to low: FNIR never rises, FPIR never falls.
    assert np.all(np.diff([v for v in det["fnir"]]) <= 1e-12) and np.all(np.diff(det["fpir"]) >= -1e-12)
    assert {g["attribute"] for g in doc["groups"]} == {"capture", "cohort"}
    cohort = next(g for g in doc["groups"] if g["attribute"] == "cohort")
    assert sum(v["probes"] for v in cohort["groups"].values()) == o["mated_probes"]  # strangers have no cohort
    assert doc["enrolment"]["people"]["attempts"] == 8
    assert doc["trust"] and doc["operator"]["calibrated"]["false_alerts_per_camera_hour"] >= 0

    # The readable report and its plots.
    report = (out / "report.md").read_text()
    for words in (
        "## In short",
        "How far to trust",
        "false alerts",
        "review",
        "not measurable",
        "Per cohort",
        "Failure to enrol",
    ):
        assert words in report
    for png in ("scores.png", "det.png", "groups-capture.png", "groups-cohort.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and f"({png})" in report


def test_pairs_file_figures_match_a_hand_computation(faces_dev, pipeline_for, tmp_path):
    pipeline = pipeline_for("facenet")
    rel = str  # absolute paths (relative ones are taken from the pairs file's folder)
    a, b = sorted((faces_dev / "amy").glob("*.png")), sorted((faces_dev / "raj").glob("*.png"))
    rows = [
        (rel(a[0]), rel(a[1]), True),
        (rel(a[2]), rel(a[3]), True),
        (rel(b[0]), rel(b[1]), True),
        (rel(a[0]), rel(b[0]), False),
        (rel(a[1]), rel(b[2]), False),
        (rel(a[4]), rel(b[4]), False),
    ]
    pairs_dir = tmp_path / "pairs"
    pairs_dir.mkdir()
    write_pairs(pairs_dir / "pairs.csv", rows)
    doc = run_pairs(pairs_dir / "pairs.csv", pipeline, n_boot=0)

    # By hand: embed each image's face, cosine per pair, then count.
    def vec(path):
        from lookout.face.image_io import read_image

        image = read_image(path)
        faces = pipeline.detect(image)
        return pipeline.embed(pipeline.align(image, faces[:1]))[0]

    scores = np.array([float(vec(pairs_dir / x) @ vec(pairs_dir / y)) for x, y, _ in rows])
    same = np.array([s for *_, s in rows])
    gen, imp = scores[same], scores[~same]
    assert doc["compared_pairs"] == 6 and doc["genuine_pairs"] == 3 and doc["failed_to_acquire"] == 0
    assert doc["genuine"]["min"] == pytest.approx(gen.min(), abs=1e-4)
    assert doc["impostor"]["max"] == pytest.approx(imp.max(), abs=1e-4)
    # Accuracy at the best threshold, by brute force over every score as threshold.
    best = max(np.mean((scores >= t) == same) for t in scores)
    assert doc["best_accuracy"] == pytest.approx(best)
    assert best_accuracy(scores, same)[0] == pytest.approx(best)
    if gen.min() > imp.max():
        assert doc["best_accuracy"] == 1.0 and doc["eer"] == 0.0
    assert all(not e["measurable"] for e in doc["tar_at_far"])  # 3 impostor pairs cannot resolve FAR 1e-2
