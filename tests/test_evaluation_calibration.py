"""`lookout calibrate` writes its threshold into a gallery bundle; search then decides by it, and a
different calibration changes the decision."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import lookout.cli
from lookout.evaluation.bundles import apply_calibration, bundle_calibration, bundle_vectors, calibration_problems
from lookout.evaluation.calibration import calibrate
from lookout.evaluation.openset import OpenSet, person_scores
from lookout.face.image_io import read_image
from lookout.gallery.keys import generate_keys
from lookout.gallery.reader import load_bundle
from lookout.gallery.search import search_image
from lookout.gallery.verify import read_manifest
from lookout.sync.build import build_gallery_from_folders

pytestmark = [pytest.mark.shared, pytest.mark.slow]
STRANGER_FILES = ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")


@pytest.fixture(scope="module")
def bundle(faces_dev, pipeline_for, tmp_path_factory, jurisdiction):
    root = tmp_path_factory.mktemp("cal")
    people = root / "people"
    for person in ("amy", "howard", "penny", "raj"):
        shutil.copytree(faces_dev / person, people / person)
    private, public = generate_keys(root / "keys")
    pipeline = pipeline_for("facenet")
    build_gallery_from_folders(people, root / "bundle", private, pipeline, progress=False, jurisdiction=jurisdiction)
    strangers = root / "strangers"
    strangers.mkdir()
    for name in STRANGER_FILES:
        shutil.copy(faces_dev / f"{name}.jpg", strangers)
    return {"dir": root / "bundle", "private": private, "public": public, "pipeline": pipeline, "strangers": strangers}


def _stranger_scores(bundle):
    pipeline = bundle["pipeline"]
    _, persons, vectors, owner = bundle_vectors(bundle["dir"], bundle["public"])
    probes = []
    for path in sorted(bundle["strangers"].glob("*.jpg")):
        image = read_image(path)
        probes.append(pipeline.embed(pipeline.align(image, pipeline.detect(image)[:1]))[0])
    scores = person_scores(np.stack(probes), vectors, owner, len(persons))
    return OpenSet(scores, np.full(len(probes), -1), np.ones(len(probes), bool), [str(i) for i in range(len(probes))])


def test_calibration_in_the_bundle_decides_search(bundle, faces_dev, tmp_path):
    work = tmp_path / "bundle"
    shutil.copytree(bundle["dir"], work)
    pipeline, digest = bundle["pipeline"], bundle["pipeline"].embedder.digest
    search = _stranger_scores(bundle)
    manifest, _ = read_manifest(work, bundle["public"])
    assert calibration_problems(manifest)  # built with the model default: not calibrated for this gallery

    # Loose: a high FPIR target read straight off the strangers' best scores lets the top two through.
    loose = calibrate(
        search.nonmated_top_scores(), search.impostor_scores(), 4, 0.3, digest, "facenet", min_false_alerts=1
    )
    # Strict: FPIR 1e-3 is beyond 7 strangers; the impostor fallback sets it above every impostor score.
    strict = calibrate(search.nonmated_top_scores(), search.impostor_scores(), 4, 1e-3, digest, "facenet")
    assert loose.method == "nonmated-max" and strict.method.startswith("impostor-1to1")
    assert loose.threshold < strict.threshold

    top = STRANGER_FILES[int(np.argmax(search.nonmated_top_scores()))]
    image = read_image(faces_dev / f"{top}.jpg")
    decisions = []
    for cal in (loose, strict):
        updated = apply_calibration(work, cal, bundle["private"], bundle["public"])
        gallery = load_bundle(work, bundle["public"], digest, None)  # signature still verifies
        assert gallery.threshold == pytest.approx(cal.threshold)
        assert bundle_calibration(updated).method == cal.method
        assert calibration_problems(updated) == []
        decisions.append(search_image(image, pipeline, gallery)[0].match is not None)
    assert decisions == [True, False]  # the same stranger: an alert under the loose calibration, none under the strict
    assert read_manifest(work, bundle["public"])[0].version == manifest.version + 2


def test_cli_calibrate_bundle(bundle, tmp_path, monkeypatch, capsys):
    work = tmp_path / "bundle"
    shutil.copytree(bundle["dir"], work)
    code = lookout.cli.main(
        [
            "calibrate",
            "--bundle",
            str(work),
            "--nonmated",
            str(bundle["strangers"]),
            "--private-key",
            str(bundle["private"]),
            "--public-key",
            str(bundle["public"]),
            "--target-fpir",
            "1e-3",
            "--passers-by",
            "200",
            "--out",
            str(tmp_path / "cal.json"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "false alert" in out and "written" in out and "review" in out
    manifest, _ = read_manifest(work, bundle["public"])
    saved = json.loads((tmp_path / "cal.json").read_text())
    assert manifest.threshold.value == pytest.approx(saved["threshold"])
    assert saved["gallery_size"] == 4 and saved["probe_count"] > 0 and saved["model_name"] == "facenet"


def test_bundle_for_another_model_refused(bundle, tmp_path):
    work = tmp_path / "bundle"
    shutil.copytree(bundle["dir"], work)
    cal = calibrate(np.array([0.3, 0.4]), np.array([0.1, 0.2, 0.3]), 4, 1e-2, "f" * 64, "other")
    from lookout.errors import InputError

    with pytest.raises(InputError, match="calibrate with the bundle's model"):
        apply_calibration(work, cal, bundle["private"], bundle["public"])
