"""A bundle is bound to its gallery (attack finding A20).

A store holding the missing-persons line installed any bundle the organisation's key ever signed, from another
gallery and purpose, as long as its version was higher: whoever answers the publish URL could swap in a
police-accountability gallery. Now the signed manifest names its gallery (`gallery_id`, set at build, kept by
update); `sync pull --gallery-id` / device.yaml `gallery.gallery_id` refuse another's bundles, and so does a store
already holding one gallery's bundle without being told; `--purpose` / device.yaml `purpose` refuse a bundle built
for another purpose. Real models, a real HTTP server on loopback, the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from lookout.cli import main
from lookout.errors import InputError
from lookout.gallery.format import BundleError
from lookout.gallery.keys import generate_keys
from lookout.gallery.reader import load_bundle
from lookout.gallery.store import BundleStore
from lookout.greengrass.config_updates import LiveSettings
from lookout.greengrass.launch import device_config_doc
from lookout.sync.build import build_gallery, update_gallery
from lookout.sync.publish import publish
from lookout.sync.records import PhotoRecord
from tests.test_hostile_bundles import Served


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def lines(tmp_path_factory, grace_hopper, astronaut, pipeline, keys) -> dict[str, Path]:
    """The missing-persons line (v1, v2 by update) and another gallery, signed with the same key, at version 20."""
    root = tmp_path_factory.mktemp("lines")
    cv2.imwrite(str(root / "grace.jpg"), grace_hopper)
    cv2.imwrite(str(root / "eileen.jpg"), astronaut)
    grace = PhotoRecord(person_id="grace", name="Grace", photo=str(root / "grace.jpg"), jurisdiction="US-NY")
    eileen = PhotoRecord(person_id="eileen", name="Eileen", photo=str(root / "eileen.jpg"), jurisdiction="US-NY")
    build_gallery([grace], root / "mp1", keys[0], pipeline, progress=False, gallery_id="missing-persons")
    update_gallery(root / "mp1", [grace, eileen], root / "mp2", keys[0], pipeline, public_key=keys[1], progress=False)
    build_gallery([eileen], root / "other", keys[0], pipeline, progress=False, version=20, purpose="accountability")
    return {"mp1": root / "mp1", "mp2": root / "mp2", "other": root / "other"}


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "publish"
    root.mkdir()
    server = Served(root)
    yield root, server
    server.close()


def _pull(url: str, store: Path, key: Path, *extra: str) -> int:
    return main(["sync", "pull", url, "--into", str(store), "--public-key", str(key), *extra])


def test_the_gallery_id_is_signed_at_build_and_kept_by_update(lines):
    assert _manifest(lines["mp1"])["gallery_id"] == "missing-persons"
    assert _manifest(lines["mp2"])["gallery_id"] == "missing-persons"
    other = _manifest(lines["other"])["gallery_id"]
    assert other.startswith("g-") and other != "missing-persons"  # a new random id when none is given


def test_an_update_refuses_another_gallery_id(lines, keys, pipeline, tmp_path):
    with pytest.raises(InputError, match="belongs to gallery missing-persons"):
        update_gallery(lines["mp2"], [], tmp_path / "x", keys[0], pipeline, gallery_id="staging", progress=False)


def test_a_store_refuses_another_gallerys_bundle_with_or_without_gallery_id(lines, served, keys, tmp_path, capsys):
    root, server = served
    publish(lines["mp1"], root)
    store = tmp_path / "store"
    assert _pull(server.url, store, keys[1]) == 0

    other_root = tmp_path / "other-publish"
    publish(lines["other"], other_root)
    other = Served(other_root)
    try:
        for extra in ([], ["--gallery-id", "missing-persons"]):
            capsys.readouterr()
            assert _pull(other.url, store, keys[1], *extra) == 2
            assert "wrong_gallery" in capsys.readouterr().err
            assert BundleStore(store).current_manifest().version == 1  # still the missing-persons line
        fresh = tmp_path / "fresh"  # a new device told its gallery: the other line is refused from the start
        assert _pull(other.url, fresh, keys[1], "--gallery-id", "missing-persons") == 2
        assert "bundle belongs to gallery g-" in capsys.readouterr().err and BundleStore(fresh).current_dir() is None
        assert _pull(other.url, fresh, keys[1], "--purpose", "identification") == 2
        assert "wrong_purpose" in capsys.readouterr().err
    finally:
        other.close()

    publish(lines["mp2"], root)  # the line's own next version still installs
    assert _pull(server.url, store, keys[1], "--gallery-id", "missing-persons") == 0
    assert BundleStore(store).current_manifest().version == 2
    capsys.readouterr()
    assert main(["sync", "status", "--into", str(store)]) == 0
    assert "gallery missing-persons" in capsys.readouterr().out


def test_a_device_loading_a_bundle_checks_its_gallery_and_purpose(lines, keys):
    assert load_bundle(lines["mp2"], keys[1], None, None, gallery_id="missing-persons").count_persons == 2
    with pytest.raises(BundleError, match="wrong_gallery"):
        load_bundle(lines["other"], keys[1], None, None, gallery_id="missing-persons")
    with pytest.raises(BundleError, match="wrong_purpose"):
        load_bundle(lines["other"], keys[1], None, None, purpose="identification")


def test_device_check_config_names_the_wrong_gallery(lines, keys, tmp_path, capsys):
    (tmp_path / "device.yaml").write_text(
        f"device_id: cam-1\nsource: {{url: {tmp_path}}}\nlocation: {{jurisdiction: US-NY}}\n"
        f"gallery: {{bundle_dir: {lines['other']}, public_key: {keys[1]}, gallery_id: missing-persons}}\n"
    )
    code = main(["run", "--config", str(tmp_path / "device.yaml"), "--check-config"])
    out, err = capsys.readouterr()
    assert code == 2 and "wrong_gallery" in out + err and "expected gallery missing-persons" in out + err


def test_the_greengrass_component_passes_its_gallery_id(tmp_path):
    environ = {"LOOKOUT_DEVICE_ID": "cam-1", "LOOKOUT_GALLERY_ID": "missing-persons"}
    doc, _key = device_config_doc(environ, LiveSettings.from_config({}), tmp_path)
    assert doc["gallery"]["gallery_id"] == "missing-persons"
    doc, _key = device_config_doc({"LOOKOUT_DEVICE_ID": "cam-1"}, LiveSettings.from_config({}), tmp_path)
    assert "gallery_id" not in doc["gallery"]  # unset: the store keeps to the gallery it first installs
