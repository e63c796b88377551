"""Bundles that should not be used, and operators who need to go back (issue 12 items 6, 13, 15).

- A bundle signed with an allow-all policy and holding someone in Illinois: `sync pull`
  refuses it with or without `--policy`, `lookout search` never names that person, `lookout run
  --check-config` fails. The built-in denial of Illinois is a floor: no policy file lifts it
  (attack finding A3; more in tests/test_hostile_policy.py).
- `lookout sync rollback` goes back a version and pins it; `sync pull` then installs nothing
  newer (saying so) until `sync unpin`; `sync status` shows it all.
- A pull with a public key logs no "no public key configured" warning.
Real HTTP server on loopback, real models, the real CLI.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest

from lookout.cli import main
from lookout.gallery.keys import generate_keys
from lookout.gallery.reader import load_bundle
from lookout.gallery.store import BundleStore
from lookout.sync.build import build_gallery
from lookout.sync.publish import publish
from lookout.sync.records import PhotoRecord
from tests.helpers import hostile_bundle

ALLOW_ALL = {"version": "allow-all", "default": "allow", "unknown_jurisdiction": "allow", "rules": []}


class Served:
    """A static web server on 127.0.0.1 over ``root``."""

    def __init__(self, root: Path) -> None:
        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory, grace_hopper, astronaut) -> Path:
    root = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(root / "grace.jpg"), grace_hopper)
    cv2.imwrite(str(root / "eileen.jpg"), astronaut)
    return root


@pytest.fixture(scope="module")
def illinois_bundle(tmp_path_factory, photos, pipeline, keys) -> Path:
    """Signed with an allow-all policy, holding Grace Hopper in US-IL (as a careless or hostile builder would)."""
    out = tmp_path_factory.mktemp("il") / "bundle"
    records = [
        PhotoRecord(person_id="grace", name="Illinois Person", photo=str(photos / "grace.jpg"), jurisdiction="US-IL"),
        PhotoRecord(person_id="eileen", name="Eileen", photo=str(photos / "eileen.jpg"), jurisdiction="US-NY"),
    ]
    hostile_bundle(records, out, keys[0], pipeline, ALLOW_ALL)
    conn = sqlite3.connect(out / "gallery.sqlite")
    assert dict(conn.execute("SELECT person_id, jurisdiction FROM persons")) == {"grace": "US-IL", "eileen": "US-NY"}
    conn.close()
    return out


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "publish"
    root.mkdir()
    server = Served(root)
    yield root, server
    server.close()


# -- 6. the built-in policy everywhere --------------------------------------------------------------


def test_pull_refuses_an_allow_all_bundle_holding_illinois_without_policy(
    illinois_bundle, served, keys, tmp_path, capsys
):
    root, server = served
    publish(illinois_bundle, root)
    store = tmp_path / "store"
    code = main(["sync", "pull", server.url, "--into", str(store), "--public-key", str(keys[1])])
    err = capsys.readouterr().err
    assert code == 2 and "policy" in err and "US-IL" in err
    assert BundleStore(store).current_dir() is None
    allow_all = tmp_path / "allow-all.json"
    allow_all.write_text(json.dumps(ALLOW_ALL))
    code = main(
        ["sync", "pull", server.url, "--into", str(store), "--public-key", str(keys[1]), "--policy", str(allow_all)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "US-IL" in err and "no policy file lifts" in err  # the built-in denial is a floor
    assert BundleStore(store).current_dir() is None


def test_search_never_names_a_person_the_built_in_policy_denies(illinois_bundle, photos, keys, capsys):
    code = main(["search", "--jurisdiction", "US-CA", str(photos / "grace.jpg"), "--gallery", str(illinois_bundle), "--public-key",
                 str(keys[1]), "--device", "CPU"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2 and "Illinois Person" not in out + err and "MATCH" not in out
    assert "US-IL" in err


def test_library_default_is_the_built_in_policy_not_the_bundles(illinois_bundle, keys):
    from lookout.gallery.format import BundleError

    with pytest.raises(BundleError, match="BIPA"):
        load_bundle(illinois_bundle, keys[1], None, None)


def test_device_check_config_fails_on_such_a_bundle(illinois_bundle, keys, tmp_path):
    from lookout.device.check import check_config
    from lookout.device.config import load_config

    (tmp_path / "device.yaml").write_text(
        f"device_id: cam-1\nsource: {{url: {tmp_path}}}\nlocation: {{jurisdiction: US-NY}}\n"
        f"gallery: {{bundle_dir: {illinois_bundle}, public_key: {keys[1]}}}\n"
    )
    lines: list[str] = []
    assert check_config(load_config(tmp_path / "device.yaml", environ={}), out=lines.append) == 2
    assert any(line.startswith("FAIL  gallery") and "US-IL" in line for line in lines), lines


# -- 13. rollback, pin, status ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, photos, pipeline, keys):
    base = tmp_path_factory.mktemp("versions")
    grace = PhotoRecord(person_id="grace", name="Grace", photo=str(photos / "grace.jpg"), jurisdiction="US-NY")
    eileen = PhotoRecord(person_id="eileen", name="Eileen", photo=str(photos / "eileen.jpg"), jurisdiction="US-NY")
    build_gallery([grace], base / "v1", keys[0], pipeline, progress=False, gallery_id="line")
    build_gallery([grace, eileen], base / "v2", keys[0], pipeline, progress=False, version=2, gallery_id="line")
    return base


def test_rollback_pins_until_unpinned_and_status_says_so(two_versions, served, keys, tmp_path, capsys, caplog):
    root, server = served
    store = tmp_path / "store"
    pull = ["sync", "pull", server.url, "--into", str(store), "--public-key", str(keys[1])]
    publish(two_versions / "v1", root)
    assert main(pull) == 0
    publish(two_versions / "v2", root)  # (publishing without --public-key checks no signature, and says so)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main(pull) == 0
    assert "installed new bundle: version 2" in capsys.readouterr().out
    assert not [r for r in caplog.records if r.getMessage() == "bundle.unverified"]  # item 15: a key was given

    assert main(["sync", "rollback", "--into", str(store), "--reason", "bad update"]) == 0
    assert "rolled back to version 1 (was 2); pinned" in capsys.readouterr().out
    assert BundleStore(store).current_manifest().version == 1
    assert main(pull) == 0  # version 2 is still published
    out = capsys.readouterr().out
    assert "pinned at version 1 (bad update" in out and "version 2 is published and was not installed" in out
    assert BundleStore(store).current_manifest().version == 1

    assert main(["sync", "status", "--into", str(store)]) == 0
    out = capsys.readouterr().out
    assert "current:  version 1" in out and "previous: version 2" in out and "PINNED at version 1" in out
    assert "offered version 2" in out
    assert main(["sync", "status", "--into", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pinned"]["version"] == 1

    assert main(["sync", "unpin", "--into", str(store)]) == 0
    assert "unpinned (was pinned at version 1)" in capsys.readouterr().out
    assert main(pull) == 0
    assert "installed new bundle: version 2" in capsys.readouterr().out
    assert main(["sync", "status", "--into", str(store)]) == 0
    assert "not pinned" in capsys.readouterr().out


def test_rollback_without_a_previous_bundle_says_so(two_versions, served, keys, tmp_path, capsys):
    root, server = served
    publish(two_versions / "v1", root)
    store = tmp_path / "store"
    assert main(["sync", "pull", server.url, "--into", str(store), "--public-key", str(keys[1])]) == 0
    assert main(["sync", "rollback", "--into", str(store)]) == 2
    assert "no previous bundle to roll back to" in capsys.readouterr().err


def test_a_damaged_pin_file_still_pins(tmp_path):
    store = BundleStore(tmp_path / "store")
    (tmp_path / "store" / "pin.json").write_text("{not json")
    assert "unreadable" in store.pinned()["reason"]
    assert store.unpin() is not None and store.pinned() is None
