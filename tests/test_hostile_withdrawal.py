"""A withdrawal follows the photo and the person, not a file name or a path (attack findings A1, A9).

- A1: a photo withdrawn (`gallery update --withdraw amy/amy1.png`) came back when the source renamed the file (new
  photo id, byte-identical); a person removed (`--remove amy`) came back when the source spelled the id `Amy`. The
  ledger now keeps the SHA-256 of every withdrawn photo and of every photo of a removed person, and compares person
  ids NFKC + case-folded: the same bytes are refused (`withdrawn`) under any name, id or person.
- A9: bundles stored photo sources relative to the builder's working directory (a reviewer's console could not find
  them), and a source folder that moved made every photo `left_source` + re-embedded. Sources are now absolute, and a
  photo with the same id and the same bytes at another path is unchanged.
Real models (faces-dev photos), the real gallery builder, CSV sources on disk.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from lookout.cli import main
from lookout.digest import sha256_file
from lookout.gallery.keys import generate_keys
from lookout.sync.build import BuildReport, update_gallery
from lookout.sync.sources import open_source

PEOPLE = [("amy", "Amy", "amy1.png"), ("amy", "Amy", "amy2.png"), ("penny", "Penny", "penny1.png")]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


def _source(
    root: Path, faces_dev: Path, rows: list[tuple[str, str, str]], rename: dict[str, str] | None = None
) -> Path:
    """``root/people.csv`` with photos in ``root/photos`` (copied from faces-dev; ``rename``: file -> new name)."""
    rename = rename or {}
    (root / "photos").mkdir(parents=True, exist_ok=True)
    lines = ["person_id,name,photo,jurisdiction"]
    for pid, name, file in rows:
        target = rename.get(file, file)
        shutil.copyfile(faces_dev / re.sub(r"\d+\.png$", "", file) / file, root / "photos" / target)
        lines.append(f"{pid},{name},photos/{target},US-CA")
    (root / "people.csv").write_text("\n".join(lines) + "\n")
    return root / "people.csv"


def _photos(bundle: Path) -> dict[str, tuple[str, str]]:
    conn = sqlite3.connect(bundle / "gallery.sqlite")
    rows = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT photo_id, person_id, source FROM photos")}
    conn.close()
    return rows


def _update(base: Path, csv: Path, out: Path, keys, pipeline, **kwargs) -> BuildReport:
    records = open_source(str(csv))
    return update_gallery(base, records, out, keys[0], pipeline, public_key=keys[1], progress=False, **kwargs)


@pytest.fixture
def built(tmp_path, faces_dev, keys, monkeypatch) -> tuple[Path, Path]:
    """v1 built by the CLI from a relative CSV path in the builder's working directory."""
    csv = _source(tmp_path / "src1", faces_dev, PEOPLE)
    monkeypatch.chdir(tmp_path)
    code = main(["gallery", "build", "src1/people.csv", "--out", "g1", "--key", str(keys[0]), "--device", "CPU",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    return tmp_path / "g1", csv


def test_sources_in_a_bundle_are_absolute_not_relative_to_the_builder(built):
    bundle, csv = built
    sources = [source for _pid, source in _photos(bundle).values()]
    assert len(sources) == 3 and all(Path(s).is_absolute() and Path(s).is_file() for s in sources), sources
    assert sorted(Path(s).parent for s in sources)[0] == csv.parent.resolve() / "photos"


def test_a_withdrawn_photo_stays_out_when_its_file_is_renamed(built, faces_dev, keys, pipeline, tmp_path):
    g1, csv = built
    v2 = _update(g1, csv, tmp_path / "g2", keys, pipeline, withdraw=["amy/amy1.png"])
    assert "amy/amy1.png" not in _photos(tmp_path / "g2") and v2.changes["photos_removed"] == 1
    again = _update(tmp_path / "g2", csv, tmp_path / "g2b", keys, pipeline)  # the source still lists it
    (kept_out,) = [r for r in again.results if r.photo_id == "amy/amy1.png"]
    assert (kept_out.status, kept_out.reason) == ("excluded", "withdrawn")  # said as such, not not_for_recognition

    moved = _source(tmp_path / "src2", faces_dev, PEOPLE, rename={"amy1.png": "amy1-renamed.png"})
    v3 = _update(tmp_path / "g2", moved, tmp_path / "g3", keys, pipeline)
    assert set(_photos(tmp_path / "g3")) == {"amy/amy2.png", "penny/penny1.png"}
    (refused,) = [r for r in v3.results if r.photo_id == "amy/amy1-renamed.png"]
    assert (refused.status, refused.reason) == ("excluded", "withdrawn") and "amy/amy1.png" in refused.detail
    # A9: the folder moved, the bytes did not: nothing removed, nothing fetched again for embedding
    assert v3.changes["photos_removed"] == 0 and v3.changes["photos_added"] == 0 and v3.embedded == 0

    v4 = _update(tmp_path / "g3", moved, tmp_path / "g4", keys, pipeline, reinstate=["amy/amy1.png"])
    assert "amy/amy1-renamed.png" in _photos(tmp_path / "g4") and v4.embedded == 1  # reinstating lifts the bytes


def test_a_removed_person_stays_out_under_another_spelling_or_id(built, faces_dev, keys, pipeline, tmp_path):
    g1, csv = built
    _update(g1, csv, tmp_path / "g2", keys, pipeline, remove=["amy"])
    assert {pid for pid, _src in _photos(tmp_path / "g2").values()} == {"penny"}

    spelled = _source(tmp_path / "src-Amy", faces_dev, [("Amy", "Amy", f) if p == "amy" else (p, n, f)
                                                        for p, n, f in PEOPLE])  # fmt: skip
    v3 = _update(tmp_path / "g2", spelled, tmp_path / "g3", keys, pipeline)
    assert {pid for pid, _src in _photos(tmp_path / "g3").values()} == {"penny"} and v3.embedded == 0

    other_id = _source(tmp_path / "src-afowler", faces_dev, [("afowler", "A. Fowler", f) if p == "amy" else (p, n, f)
                                                             for p, n, f in PEOPLE])  # fmt: skip
    v4 = _update(tmp_path / "g2", other_id, tmp_path / "g4", keys, pipeline)
    assert {pid for pid, _src in _photos(tmp_path / "g4").values()} == {"penny"} and v4.embedded == 0
    assert {r.reason for r in v4.results if r.person_id == "afowler"} == {"withdrawn"}


def test_an_update_never_builds_on_a_base_whose_ledger_was_edited(built, keys, pipeline, tmp_path, capsys):
    """Attack A26: erase the ledger of a base, write its new digest into manifest.json (signature untouched): the
    update verified nothing without --public-key and re-signed the withdrawn person back in. The base is now
    always verified, with the public half of --key when no --public-key is given."""
    g1, csv = built
    _update(g1, csv, tmp_path / "g2", keys, pipeline, remove=["amy"])
    tampered = tmp_path / "g2t"
    shutil.copytree(tmp_path / "g2", tampered)
    conn = sqlite3.connect(tampered / "gallery.sqlite")
    with conn:
        conn.execute("DELETE FROM withdrawn")
    conn.close()
    manifest = json.loads((tampered / "manifest.json").read_bytes())
    db = tampered / "gallery.sqlite"
    manifest["files"]["gallery.sqlite"] = {"sha256": sha256_file(db), "size": db.stat().st_size}
    (tampered / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    code = main(["gallery", "update", str(csv), "--gallery", str(tampered), "--out", str(tmp_path / "g3"),
                 "--key", str(keys[0]), "--device", "CPU", "--no-progress"])  # fmt: skip
    assert code == 2 and "bad_signature" in capsys.readouterr().err
    assert not (tmp_path / "g3" / "manifest.json").exists()
