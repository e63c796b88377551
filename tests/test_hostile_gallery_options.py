"""Operator values that would have signed a harmful bundle or crashed the CLI (attack findings A16, A17).

- A threshold is a cosine: -3, nan, 5 are refused in one line (build, update, search, audit, load_bundle,
  calibrate); an operator's threshold carries the FPIR it predicts at this gallery's size (printed, in the
  manifest), and one predicted far above the target is refused unless ``--accept-fpir``.
- HNSW M 0 (a segmentation fault in hnswlib), ef 0, bundle version -1, --top 0, --tile -5: one line each.
- ``--out`` where nothing can be written: one line; a refused build leaves no empty OUT.work behind.
Real models, real signed bundles, the real CLI entry point in-process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from lookout.cli.main import main
from lookout.errors import InputError
from lookout.gallery.format import MANIFEST, BundleError
from lookout.gallery.index import IndexParams
from lookout.gallery.keys import generate_keys, write_signed_manifest
from lookout.gallery.reader import load_bundle
from lookout.gallery.search import search_image
from lookout.sync.build import build_gallery
from lookout.sync.records import PhotoRecord


@pytest.fixture(autouse=True)
def _own_log_handlers() -> Iterator[None]:
    """The CLI's ``configure`` points the root logger at the captured stderr of the test that ran it: drop handlers
    left on a stream another test closed, and put the logger back afterwards."""
    root = logging.getLogger()
    root.handlers[:] = [
        h for h in root.handlers if not (isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False))
    ]
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def people(tmp_path_factory, grace_hopper, astronaut) -> Path:
    """A two-person CSV source (US-NY) with real photos."""
    root = tmp_path_factory.mktemp("people")
    cv2.imwrite(str(root / "grace.jpg"), grace_hopper)
    cv2.imwrite(str(root / "eileen.jpg"), astronaut)
    (root / "people.csv").write_text(
        "person_id,name,photo,jurisdiction\ngrace,Grace,grace.jpg,US-NY\neileen,Eileen,eileen.jpg,US-NY\n"
    )
    return root / "people.csv"


def _records(people: Path) -> list[PhotoRecord]:
    return [
        PhotoRecord(person_id=p, name=p.title(), photo=str(people.parent / f"{p}.jpg"), jurisdiction="US-NY")
        for p in ("grace", "eileen")
    ]


def _refused(argv: list[str], capsys) -> str:
    """Run the CLI; it must refuse (argparse: exit 2, or rc 2) in one line, without a traceback. Returns the line."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    problems = [line for line in err.splitlines() if "error:" in line or line.startswith("lookout:")]
    assert len(problems) == 1, err
    return problems[0]


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--threshold", "-3", "between -1 and 1"),
        ("--threshold", "nan", "between -1 and 1"),
        ("--threshold", "5", "between -1 and 1"),
        ("--M", "0", "2 or more"),
        ("--ef", "0", "1 or more"),
        ("--ef-construction", "0", "1 or more"),
        ("--bundle-version", "-1", "1 or more"),
        ("--bundle-version", "0", "1 or more"),
        ("--target-fpir", "5", "between 0 and 1"),
        ("--target-fpir", "0.9", "--accept-fpir"),
        ("--target-fpir", "1e-300", "no calibration measures rates that small"),
        ("--tile", "-5", "tile size"),
    ],
)
def test_build_refuses_a_bad_value_in_one_line_and_leaves_nothing(tmp_path, people, keys, capsys, option, value, words):
    out = tmp_path / "g"
    line = _refused(["gallery", "build", str(people), "--out", str(out), "--key", str(keys[0]), option, value], capsys)
    assert option in line and words in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused build left a folder behind"


def test_build_into_an_unwritable_place_says_so_in_one_line(tmp_path, people, keys, capsys):
    line = _refused(["gallery", "build", str(people), "--out", "/proc/lookout-x", "--key", str(keys[0])], capsys)
    assert "/proc/lookout-x" in line and "cannot" in line


def test_a_bad_key_is_refused_before_any_folder_is_made(tmp_path, people, capsys):
    (tmp_path / "not-a-key.pem").write_text("hello")
    out = tmp_path / "out" / "g"
    line = _refused(
        ["gallery", "build", str(people), "--out", str(out), "--key", str(tmp_path / "not-a-key.pem")], capsys
    )
    assert "not-a-key.pem" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-key.pem"]


def test_hnsw_parameters_are_checked_wherever_they_come_from():
    with pytest.raises(ValueError, match="M must be an integer of at least 2"):
        IndexParams(M=0)  # hnswlib: segmentation fault
    with pytest.raises(ValueError, match="ef must be"):
        IndexParams(ef=0)


@pytest.mark.slow
def test_operator_threshold_carries_its_predicted_fpir_and_far_above_target_needs_accepting(
    tmp_path, people, keys, pipeline, capsys
):
    with pytest.raises(InputError, match=r"predicted FPIR .* times the target .*--accept-fpir"):
        build_gallery(_records(people), tmp_path / "low", keys[0], pipeline, threshold=0.03, progress=False)
    assert not (tmp_path / "low").exists()
    accepted = build_gallery(
        _records(people), tmp_path / "low", keys[0], pipeline, threshold=0.03, accept_fpir=True, progress=False
    )
    basis = accepted.manifest.threshold.basis
    assert basis["predicted_fpir"] > 0.05 and basis["accepted_by_operator"] == "--accept-fpir"
    code = main(["gallery", "build", str(people), "--out", str(tmp_path / "ok"), "--key", str(keys[0]),
                 "--threshold", "0.6", "--device", "CPU", "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "threshold 0.6000 (operator (--threshold)): predicted FPIR" in out
    manifest = json.loads((tmp_path / "ok" / MANIFEST).read_text())
    assert manifest["threshold"]["basis"]["predicted_fpir"] < 0.01
    assert manifest["threshold"]["basis"]["gallery_persons"] == 2


@pytest.mark.slow
def test_a_signed_bundle_with_a_threshold_outside_minus_1_1_is_refused_at_load(tmp_path, people, keys, pipeline):
    build_gallery(_records(people), tmp_path / "g", keys[0], pipeline, progress=False)
    doc = json.loads((tmp_path / "g" / MANIFEST).read_text())
    doc["threshold"]["value"] = -3.0
    write_signed_manifest(tmp_path / "g", json.dumps(doc).encode(), keys[0])  # validly signed, by the right key
    with pytest.raises(BundleError, match=r"threshold\.value"):
        load_bundle(tmp_path / "g", keys[1], pipeline.embedder.digest, None, location="US-NY")


@pytest.mark.slow
def test_search_decision_does_not_depend_on_how_many_candidates_are_shown(
    tmp_path, people, keys, pipeline, grace_hopper, capsys
):
    build_gallery(_records(people), tmp_path / "g", keys[0], pipeline, progress=False)
    gallery = load_bundle(tmp_path / "g", keys[1], pipeline.embedder.digest, None, location="US-NY")
    (one,) = search_image(grace_hopper, pipeline, gallery, top=1)
    (five,) = search_image(grace_hopper, pipeline, gallery, top=5)
    assert one.match is not None and five.match is not None and one.match.person_id == five.match.person_id == "grace"
    with pytest.raises(InputError, match="at least one candidate"):
        search_image(grace_hopper, pipeline, gallery, top=0)
    with pytest.raises(InputError, match="between -1 and 1"):
        search_image(grace_hopper, pipeline, gallery, threshold=float("nan"))
    image = str(people.parent / "grace.jpg")
    for option, value in (("--top", "0"), ("--top", "-1"), ("--threshold", "nan"), ("--threshold", "5")):
        line = _refused(
            ["search", "--jurisdiction", "US-CA", image, "--gallery", str(tmp_path / "g"), option, value], capsys
        )
        assert option in line


@pytest.mark.slow
def test_search_with_an_operator_threshold_says_what_it_predicts(tmp_path, people, keys, pipeline, capsys):
    build_gallery(_records(people), tmp_path / "g", keys[0], pipeline, progress=False)
    image = str(people.parent / "grace.jpg")
    argv = [
        "search",
        "--jurisdiction",
        "US-CA",
        image,
        "--gallery",
        str(tmp_path / "g"),
        "--public-key",
        str(keys[1]),
        "--device",
        "CPU",
    ]
    assert main([*argv, "--threshold", "0.1"]) == 0
    err = capsys.readouterr().err
    assert "warning: --threshold 0.1 instead of the bundle's" in err and "far above the target" in err
    assert main([*argv, "--threshold", "0.6"]) == 0
    err = capsys.readouterr().err
    assert "note: --threshold 0.6" in err and "far above" not in err


@pytest.mark.slow
def test_a_threshold_that_would_miss_most_enrolled_people_needs_accept_fnir(tmp_path, keys, people, pipeline):
    """A31: 0.99 for 0.35 signs a missing-persons gallery that never alerts."""
    with pytest.raises(InputError, match=r"predicted FNIR .*--accept-fnir"):
        build_gallery(_records(people), tmp_path / "g", keys[0], pipeline, threshold=0.99, progress=False)
    report = build_gallery(
        _records(people), tmp_path / "g", keys[0], pipeline, threshold=0.99, accept_fnir=True, progress=False
    )
    assert report.manifest.threshold.basis["accepted_fnir_by_operator"] == "--accept-fnir"
