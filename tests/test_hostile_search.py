"""Search refuses bundles whose signature it cannot check (attack finding A13).

The policy check reads the people's jurisdictions from gallery.sqlite. A copy of a signed bundle with one SQL edit
(the Illinois person moved to US-CA) and the new digests written into manifest.json (manifest.sig untouched) passed
every check when no public key was given, and `lookout search` named the person. Now a path that matches faces
(`lookout search`, `gallery audit`, `load_bundle`, which the console's search uses) fails closed without a key; a
sync store is searched with the key `sync pull` verified it with, so an edited store is refused too.
Real models, a real HTTP server on loopback for the pull, the real CLI.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import cv2
import pytest

from lookout.cli import main
from lookout.digest import sha256_file
from lookout.gallery.format import BundleError
from lookout.gallery.keys import generate_keys
from lookout.gallery.reader import load_bundle
from lookout.gallery.store import KEY_FILE, BundleStore
from lookout.sync.build import build_gallery
from lookout.sync.publish import publish
from lookout.sync.records import PhotoRecord
from tests.helpers import hostile_bundle
from tests.test_hostile_bundles import Served


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory, grace_hopper, astronaut) -> Path:
    root = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(root / "grace.jpg"), grace_hopper)
    cv2.imwrite(str(root / "eileen.jpg"), astronaut)
    return root


def _records(photos: Path, grace_in: str) -> list[PhotoRecord]:
    return [
        PhotoRecord(person_id="grace", name="Grace Hopper", photo=str(photos / "grace.jpg"), jurisdiction=grace_in),
        PhotoRecord(person_id="eileen", name="Eileen", photo=str(photos / "eileen.jpg"), jurisdiction="US-NY"),
    ]


@pytest.fixture(scope="module")
def honest(tmp_path_factory, photos, pipeline, keys) -> Path:
    out = tmp_path_factory.mktemp("honest") / "bundle"
    build_gallery(_records(photos, "US-CA"), out, keys[0], pipeline, progress=False)
    return out


def _edit(bundle: Path, sql: str) -> None:
    """What the attacker did: one SQL edit, the new digest and size in manifest.json, manifest.sig untouched."""
    conn = sqlite3.connect(bundle / "gallery.sqlite")
    with conn:
        conn.execute(sql)
    conn.close()
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    db = bundle / "gallery.sqlite"
    manifest["files"]["gallery.sqlite"] = {"sha256": sha256_file(db), "size": db.stat().st_size}
    (bundle / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")


@pytest.fixture(scope="module")
def tampered(tmp_path_factory, photos, pipeline, keys) -> Path:
    """Grace in US-IL, signed (built by a careless builder); then the copy edited to say US-CA."""
    out = tmp_path_factory.mktemp("tampered") / "bundle"
    hostile_bundle(_records(photos, "US-IL"), out, keys[0], pipeline)
    _edit(out, "UPDATE persons SET jurisdiction = 'US-CA'")
    return out


def _search(photos: Path, gallery: Path, *extra: str) -> list[str]:
    return [
        "search",
        "--jurisdiction",
        "US-CA",
        str(photos / "grace.jpg"),
        "--gallery",
        str(gallery),
        "--device",
        "CPU",
        *extra,
    ]


def test_search_refuses_a_tampered_bundle_without_a_key(tampered, photos, capsys):
    code = main(_search(photos, tampered))
    out, err = capsys.readouterr()
    assert code == 2 and "Grace Hopper" not in out + err and "match" not in out
    assert "--public-key: required" in err


def test_search_with_the_key_says_the_signature_is_bad(tampered, photos, keys, capsys):
    code = main(_search(photos, tampered, "--public-key", str(keys[1])))
    out, err = capsys.readouterr()
    assert code == 2 and "Grace Hopper" not in out and "bad_signature" in err


def test_an_honest_bundle_is_refused_unsigned_too_and_searched_with_its_key(honest, photos, keys, capsys):
    assert main(_search(photos, honest)) == 2
    assert "--public-key: required" in capsys.readouterr().err
    assert main(_search(photos, honest, "--public-key", str(keys[1]))) == 0
    assert "match Grace Hopper (grace)" in capsys.readouterr().out


def test_the_library_fails_closed_without_a_key(tampered, honest, keys):
    """load_bundle is what the console's search and the device use."""
    with pytest.raises(BundleError, match="unverified"):
        load_bundle(tampered, None, None, None)
    with pytest.raises(BundleError, match="bad_signature"):
        load_bundle(tampered, keys[1], None, None)
    assert load_bundle(honest, None, None, None, allow_unsigned=True).count_persons == 2  # said in so many words


def test_gallery_audit_needs_the_key(tampered, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gallery", "audit", str(tampered)])
    assert exit_info.value.code == 2 and "--public-key" in capsys.readouterr().err


def test_a_sync_store_is_searched_with_the_key_it_was_verified_with(honest, photos, keys, tmp_path, capsys):
    root = tmp_path / "publish"
    root.mkdir()
    publish(honest, root)
    server = Served(root)
    try:
        store = tmp_path / "store"
        assert main(["sync", "pull", server.url, "--into", str(store), "--public-key", str(keys[1])]) == 0
    finally:
        server.close()
    assert (store / KEY_FILE).read_bytes() == keys[1].read_bytes()
    capsys.readouterr()
    assert main(_search(photos, store, "--public-key", str(keys[1]))) == 0
    assert "match Grace Hopper (grace)" in capsys.readouterr().out
    assert main(_search(photos, store)) == 2  # A28: never the key kept inside the store it checks
    assert "--public-key: required" in capsys.readouterr().err

    copy = tmp_path / "copy"
    shutil.copytree(store, copy, symlinks=True)
    current = BundleStore(copy).current_dir()
    assert current is not None
    _edit(current, "UPDATE persons SET name = 'Someone Else'")
    assert main(_search(photos, copy, "--public-key", str(keys[1]))) == 2
    out, err = capsys.readouterr()
    assert "bad_signature" in err and "Someone Else" not in out
    evil = generate_keys(tmp_path / "evil")  # A28: the editor re-signs and swaps the store's kept key too
    (copy / KEY_FILE).write_bytes(evil[1].read_bytes())
    assert main(_search(photos, copy, "--public-key", str(keys[1]))) == 2
    assert "Someone Else" not in capsys.readouterr().out


# -- attack A40: the probe photo's subject is someone where the photo was taken -------------------------------


def _search_taken_in(photos: Path, gallery: Path, where: str, *extra: str) -> list[str]:
    return ["search", "--jurisdiction", where, str(photos / "grace.jpg"), "--gallery", str(gallery), *extra]


@pytest.mark.parametrize("where", ["US-IL", "Illinois", "US", "Atlantis"])
def test_search_of_a_photo_taken_where_recognition_is_denied_is_refused(
    where, honest, photos, keys, capsys, monkeypatch
):
    detected: list[object] = []
    monkeypatch.setattr("lookout.face.pipeline.FacePipeline.detect", lambda *a, **k: detected.append(a) or [])
    code = main(_search_taken_in(photos, honest, where, "--public-key", str(keys[1]), "--device", "CPU"))
    out, err = capsys.readouterr()
    assert code == 2 and "Grace Hopper" not in out
    refusals = [line for line in err.splitlines() if line.startswith("lookout:")]
    assert len(refusals) == 1 and "Traceback" not in err
    assert refusals[0].startswith(
        "lookout: --jurisdiction: face recognition is not allowed where the photos were taken"
    )
    assert detected == []  # refused before any face was looked for


def test_search_without_saying_where_the_photo_was_taken_is_refused(honest, photos, keys, capsys):
    with pytest.raises(SystemExit) as ended:
        main(["search", str(photos / "grace.jpg"), "--gallery", str(honest), "--public-key", str(keys[1])])
    assert ended.value.code == 2 and "--jurisdiction" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["detect", "embed"])
@pytest.mark.parametrize("where", ["US-IL", "Chicago", "US"])
def test_detect_and_embed_refuse_photos_taken_where_recognition_is_denied(command, where, photos, capsys):
    """Attack A46: a face template (or face geometry) of a photo is a biometric identifier of someone there."""
    code = main([command, "--jurisdiction", where, str(photos / "grace.jpg"), "--device", "CPU", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "lookout: --jurisdiction: face recognition is not allowed where the photos were taken" in err
