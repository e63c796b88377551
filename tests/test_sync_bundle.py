"""Bundles end to end: build, update with a delta, publish, pull over HTTP on 127.0.0.1 (full, delta,
conditional GET, background), and every class of bad bundle rejected while the old one keeps serving."""

from __future__ import annotations

import functools
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest

from lookout.cli import main
from lookout.gallery.delta import apply_delta, read_delta
from lookout.gallery.format import BundleError
from lookout.gallery.keys import generate_keys
from lookout.gallery.policy import Policy
from lookout.gallery.pull import BundlePuller
from lookout.gallery.reader import load_bundle
from lookout.gallery.store import BundleStore
from lookout.gallery.verify import check_files, read_manifest
from lookout.sync.build import build_gallery, update_gallery
from lookout.sync.publish import publish
from lookout.sync.sources.folders import read_folders
from tests.helpers import hostile_bundle


@pytest.fixture(scope="module")
def people_dir(tmp_path_factory, grace_hopper, astronaut) -> Path:
    root = tmp_path_factory.mktemp("people")
    for person, image in (("grace", grace_hopper), ("eileen", astronaut)):
        (root / person).mkdir()
        cv2.imwrite(str(root / person / f"{person}.jpg"), image)
    (root / "grace" / "person.json").write_text(
        json.dumps({"name": "Grace Hopper", "department": "USN", "attributes": {"age": 79}})
    )
    return root


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def versions(people_dir, keys, pipeline, tmp_path_factory, astronaut, jurisdiction):
    """v1: grace + eileen. v2 (update): grace removed, 'mirror' added (a flipped photo). v3: full build."""
    base = tmp_path_factory.mktemp("bundles")
    v1 = build_gallery(
        read_folders(people_dir), base / "v1", keys[0], pipeline, progress=False, jurisdiction=jurisdiction
    )
    (people_dir / "mirror").mkdir()
    cv2.imwrite(str(people_dir / "mirror" / "m.jpg"), cv2.flip(astronaut, 1))
    records = [r for r in read_folders(people_dir) if r.person_id != "grace"]
    v2 = update_gallery(
        base / "v1",
        records,
        base / "v2",
        keys[0],
        pipeline,
        public_key=keys[1],
        progress=False,
        jurisdiction=jurisdiction,
    )
    v3 = build_gallery(  # a full rebuild of the same line: same gallery id
        read_folders(people_dir),
        base / "v3",
        keys[0],
        pipeline,
        version=3,
        progress=False,
        jurisdiction=jurisdiction,
        gallery_id=v1.manifest.gallery_id,
    )
    return {"v1": v1, "v2": v2, "v3": v3, "dir": base}


class Server:
    def __init__(self, root: Path) -> None:
        self.paths: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server.paths.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "publish"
    root.mkdir()
    server = Server(root)
    yield root, server
    server.close()


def test_update_writes_small_delta_that_reproduces_the_bundle(versions, tmp_path, keys, pipeline):
    v2 = versions["v2"]
    assert v2.manifest.version == 2 and v2.manifest.delta.from_version == 1
    assert v2.changes["persons_removed"] == 1 and v2.changes["photos_added"] == 1
    assert v2.embedded == 1  # only the new photo; eileen's was not embedded again
    delta_bytes = sum(e.size for e in v2.manifest.delta.files.values())
    assert delta_bytes < sum(e.size for e in v2.manifest.files.values()) / 4
    # a device applying the delta to v1 gets byte-identical files
    v1_dir, v2_dir = versions["dir"] / "v1", versions["dir"] / "v2"
    doc, vectors = read_delta(v2_dir)
    apply_delta(v1_dir, read_manifest(v1_dir)[0], doc, vectors, tmp_path / "applied")
    shutil.copyfile(v2_dir / "policy.json", tmp_path / "applied" / "policy.json")
    check_files(tmp_path / "applied", v2.manifest.files)
    gallery = load_bundle(v2_dir, keys[1], pipeline.embedder.digest, None)
    assert sorted(p["person_id"] for p in gallery.persons()) == ["eileen", "mirror"]
    assert gallery.index.deleted == 1 and gallery.count_photos == 2


def test_load_bundle_rejections(versions, keys, pipeline, tmp_path):
    src = versions["dir"] / "v1"
    good = load_bundle(src, keys[1], pipeline.embedder.digest, Policy.default(), location="US-CA")
    assert good.version == 1 and good.count_persons == 2 and good.person("grace")["attributes"] == {"age": 79}
    assert good.dim == pipeline.embedder.dim and good.model_name == pipeline.embedder.name

    def tampered(name: str, change) -> Path:
        d = tmp_path / name
        shutil.copytree(src, d)
        change(d)
        return d

    def flip(d):
        data = bytearray((d / "index.bin").read_bytes())
        data[len(data) // 2] ^= 0x01
        (d / "index.bin").write_bytes(bytes(data))

    cases = {
        "digest_mismatch": (tampered("flip", flip), keys[1], None, None),
        "size_mismatch": (
            tampered("trunc", lambda d: (d / "gallery.sqlite").write_bytes((d / "gallery.sqlite").read_bytes()[:-100])),
            keys[1],
            None,
            None,
        ),
        "bad_signature": (
            tampered(
                "sig",
                lambda d: (d / "manifest.json").write_bytes(
                    (d / "manifest.json").read_bytes().replace(b'"version": 1', b'"version": 9')
                ),
            ),
            keys[1],
            None,
            None,
        ),
        "wrong_model": (src, keys[1], "0" * 64, None),
        "missing_file": (tampered("missing", lambda d: (d / "index.bin").unlink()), keys[1], None, None),
    }
    for reason, (d, key, digest, loc) in cases.items():
        with pytest.raises(BundleError) as err:
            load_bundle(d, key, digest, None, location=loc)
        assert err.value.reason == reason, (reason, str(err.value))
    other = generate_keys(tmp_path / "other")[1]
    with pytest.raises(BundleError, match="does not verify"):
        load_bundle(src, other, None, None)
    with pytest.raises(BundleError, match="location"):
        load_bundle(src, keys[1], None, Policy.default(), location="US-IL")


def test_device_refuses_bundle_with_denied_person(people_dir, keys, pipeline, tmp_path, jurisdiction):
    permissive = Policy.from_dict({"version": "open-1", "rules": []})
    records = [
        r.model_copy(update={"jurisdiction": "US-IL"}) if r.person_id == "grace" else r
        for r in read_folders(people_dir)
        if r.person_id != "mirror"
    ]
    hostile_bundle(records, tmp_path / "b", keys[0], pipeline, {"version": "open-1", "rules": []})
    for device_policy in (Policy.default(), None, permissive):  # none: the built-in one; a file: the floor stays
        with pytest.raises(BundleError) as err:
            load_bundle(tmp_path / "b", keys[1], None, device_policy)
        assert err.value.reason == "policy" and "US-IL" in str(err.value)


def test_pull_full_then_delta_then_unchanged(versions, served, keys, pipeline, tmp_path):
    root, server = served
    publish(versions["dir"] / "v1", root, keys[1])
    store = BundleStore(tmp_path / "device")
    swaps = []
    puller = BundlePuller(server.url, store, keys[1], pipeline.embedder.digest, Policy.default(), on_swap=swaps.append)
    assert puller.pull_once() is True
    assert read_manifest(store.current_dir())[0].version == 1 and store.previous_dir() is None
    publish(versions["dir"] / "v2", root, keys[1])
    server.paths.clear()
    assert puller.pull_once() is True
    assert "/v/2/index.bin" not in server.paths and "/v/2/delta/vectors.npy" in server.paths  # the delta, not the index
    assert read_manifest(store.current_dir())[0].version == 2
    assert read_manifest(store.previous_dir())[0].version == 1
    assert swaps == [store.versions / swaps[0].name, store.current_dir()]
    gallery = load_bundle(store.current_dir(), keys[1], pipeline.embedder.digest, Policy.default())
    assert gallery.version == 2 and gallery.person("mirror") is not None
    assert puller.pull_once() is False  # conditional GET: 304
    assert store.rollback() is not None and read_manifest(store.current_dir())[0].version == 1


def _tamper_cases(versions, keys, tmp_path):
    """Each: (name, how to spoil v3 in the publish folder, expected log reason)."""
    other_priv, _ = generate_keys(tmp_path / "other")

    def truncate(d):
        (d / "index.bin").write_bytes((d / "index.bin").read_bytes()[:-1000])

    def flip(d):
        data = bytearray((d / "gallery.sqlite").read_bytes())
        data[200] ^= 0x80
        (d / "gallery.sqlite").write_bytes(bytes(data))

    def bad_sig(d):
        import base64

        from lookout.gallery.keys import load_private_key, sign

        sig = sign(load_private_key(other_priv), (d / "manifest.json").read_bytes())
        (d / "manifest.sig").write_bytes(base64.b64encode(sig))

    return [
        ("truncated", truncate, "size_mismatch"),
        ("flipped byte", flip, "digest_mismatch"),
        ("bad signature", bad_sig, "bad_signature"),
    ]


@pytest.mark.slow
def test_bad_bundles_rejected_old_keeps_serving(versions, keys, pipeline, tmp_path, caplog):
    cases = _tamper_cases(versions, keys, tmp_path)
    cases += [("wrong model", lambda d: None, "wrong_model")]
    for name, spoil, reason in cases:
        root = tmp_path / name.replace(" ", "_")
        root.mkdir()
        server = Server(root)
        try:
            publish(versions["dir"] / "v2", root)
            store = BundleStore(tmp_path / ("dev_" + name.replace(" ", "_")))
            digest = pipeline.embedder.digest
            BundlePuller(server.url, store, keys[1], digest, Policy.default()).pull_once()
            before = store.current_dir()
            assert read_manifest(before)[0].version == 2
            publish(versions["dir"] / "v3", root)
            spoil(root / "v" / "3")
            if reason == "wrong_model":
                digest = "f" * 64
            caplog.clear()
            with caplog.at_level("WARNING"):
                assert BundlePuller(server.url, store, keys[1], digest, Policy.default()).pull_once() is False, name
            assert store.current_dir() == before, name
            assert load_bundle(store.current_dir(), keys[1], None, Policy.default()).version == 2
            lines = [r for r in caplog.records if r.getMessage() == "sync.rejected"]
            assert lines and lines[-1].lookout_fields["reason"] == reason, (
                name,
                [r.__dict__.get("lookout_fields") for r in caplog.records],
            )
            assert not list(store.staging.iterdir()), name  # staging cleaned
        finally:
            server.close()


def test_policy_bundle_rejected_by_puller(people_dir, keys, pipeline, served, tmp_path, caplog, jurisdiction):
    root, server = served
    records = [
        r.model_copy(update={"jurisdiction": "US-IL"}) if r.person_id == "grace" else r
        for r in read_folders(people_dir)
    ]
    hostile_bundle(records, tmp_path / "b", keys[0], pipeline, {"version": "open", "rules": []})
    publish(tmp_path / "b", root)
    store = BundleStore(tmp_path / "dev")
    with caplog.at_level("ERROR"):
        assert BundlePuller(server.url, store, keys[1], None, Policy.default()).pull_once() is False
    assert store.current_dir() is None
    assert any(getattr(r, "lookout_fields", {}).get("reason") == "policy" for r in caplog.records)


def test_corrupt_delta_falls_back_to_full(versions, served, keys, tmp_path):
    root, server = served
    publish(versions["dir"] / "v1", root)
    store = BundleStore(tmp_path / "dev")
    puller = BundlePuller(server.url, store, keys[1], None, None)
    assert puller.pull_once()
    publish(versions["dir"] / "v2", root)
    data = bytearray((root / "v/2/delta/vectors.npy").read_bytes())
    data[-3] ^= 0xFF
    (root / "v/2/delta/vectors.npy").write_bytes(bytes(data))
    server.paths.clear()
    assert puller.pull_once() is True
    assert "/v/2/index.bin" in server.paths
    assert read_manifest(store.current_dir())[0].version == 2


def test_network_down_keeps_current(versions, served, keys, tmp_path):
    root, server = served
    publish(versions["dir"] / "v1", root)
    store = BundleStore(tmp_path / "dev")
    assert BundlePuller(server.url, store, keys[1], None, None).pull_once()
    current = store.current_dir()
    server.close()
    server.close = lambda: None
    puller = BundlePuller(server.url, store, keys[1], None, None, timeout_s=2)
    assert puller.pull_once() is False and puller.last_error
    assert store.current_dir() == current


def test_background_puller_swaps_and_stops(versions, served, keys, tmp_path):
    root, server = served
    publish(versions["dir"] / "v1", root)
    store = BundleStore(tmp_path / "dev")
    swapped = threading.Event()
    seen = []
    puller = BundlePuller(
        server.url, store, keys[1], None, None, interval_s=0.1, on_swap=lambda p: (seen.append(p), swapped.set())
    )
    puller.start()
    try:
        assert swapped.wait(20)
        swapped.clear()
        publish(versions["dir"] / "v2", root)
        assert swapped.wait(20)
    finally:
        puller.stop()
    assert len(seen) == 2 and read_manifest(store.current_dir())[0].version == 2


@pytest.mark.slow
def test_cli_keys_build_publish_pull(people_dir, tmp_path, served, capsys, jurisdiction):
    root, server = served
    assert main(["keys", "generate", "--out", str(tmp_path / "k")]) == 0
    priv, pub = tmp_path / "k" / "bundle-signing.key.pem", tmp_path / "k" / "bundle-signing.pub.pem"
    assert main(["keys", "generate", "--out", str(tmp_path / "k")]) == 2  # refuses to overwrite
    assert (
        main(
            [
                "gallery",
                "build",
                str(people_dir),
                "--out",
                str(tmp_path / "b"),
                "--key",
                str(priv),
                "--device",
                "CPU",
                "--no-progress",
                "--jurisdiction",
                jurisdiction,
                "--report",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    assert main(["gallery", "publish", str(tmp_path / "b"), "--to", str(root), "--public-key", str(pub)]) == 0
    assert main(["sync", "pull", server.url, "--into", str(tmp_path / "dev"), "--public-key", str(pub)]) == 0
    assert "installed new bundle" in capsys.readouterr().out
    assert (
        main(["gallery", "verify", str(tmp_path / "dev" / "current"), "--public-key", str(pub), "--location", "US-IL"])
        == 2
    )
    assert "location" in capsys.readouterr().err
    assert main(["gallery", "build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), "--key", str(priv)]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
