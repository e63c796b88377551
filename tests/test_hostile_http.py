"""HTTP servers that trickle, and HTTP API sources that change under a gallery (attack findings A5, A6, A7).

- A5: photo ids of an HTTP API source come from the API's own photo id or the photo URL, never the position in the
  list: a photo added in front does not give a withdrawn photo a new id, nor block the new photo.
- A6: a reused `--work` folder re-reads every record once a walk has finished: consent withdrawn in the API and a
  move into US-IL reach the next update (the enrolment cache is keyed on the photo's bytes, not its id).
- A7: a server trickling its status line or headers one byte at a time is cut off at the request's deadline
  (connection, headers and body together), in the HTTP client, in `gallery build` and in the device's bundle
  puller (`sync pull`), which would otherwise never install a later bundle, nor the withdrawals it carries.

Real servers on loopback (a raw socket server for the trickling), the real CLI.
"""

from __future__ import annotations

import json
import socket
import socketserver
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookout.cli import main
from lookout.gallery.keys import generate_keys
from lookout.gallery.policy import Policy
from lookout.gallery.pull import BundlePuller
from lookout.gallery.store import BundleStore
from lookout.http_client import FetchError, HttpClient
from lookout.sync.build import BuildReport, build_gallery, update_gallery
from lookout.sync.sources.http_api import HttpApiSource

TRICKLE_FOR_S = 60.0  # how long a trickling answer would take in all: far past every deadline below


class Trickler(socketserver.ThreadingTCPServer):
    """A raw HTTP server: ``/trickle-status`` sends its status line, ``/trickle-headers`` its headers and
    ``/trickle-body`` a 5,000-byte body, one byte every 0.2 s; ``/json/<name>`` and ``/file/<name>`` answer at once
    from ``docs`` and ``files`` (404 when absent). Every request path is kept in ``paths``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TrickleHandler)
        self.paths: list[str] = []
        self.docs: dict[str, object] = {}
        self.files: dict[str, bytes] = {}
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.stopping = threading.Event()


class _TrickleHandler(socketserver.StreamRequestHandler):
    server: Trickler

    def handle(self) -> None:
        line = self.rfile.readline(65537).decode("latin-1")
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass
        path = line.split(" ")[1] if line.count(" ") >= 2 else "/"
        self.server.paths.append(path)
        if path.startswith("/json/"):
            doc = self.server.docs.get(path.removeprefix("/json/"))
            return self._answer(json.dumps(doc).encode()) if doc is not None else self._answer(b"{}", 404)
        if path.startswith("/file/"):
            return self._answer(self.server.files.get(path.removeprefix("/file/"), b""))
        if path == "/trickle-status":
            return self._trickle(b"HTTP/1.1 200 OK\r\n" * 100)
        if path == "/trickle-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            return self._trickle(b"x" * 60000)
        if path.endswith("/trickle-body") or path.endswith("manifest.json"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
            return self._trickle(b"{" * 5000)
        self._answer(b"no", 404)

    def _answer(self, body: bytes, status: int = 200) -> None:
        self.wfile.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        self.wfile.write(body)

    def _trickle(self, data: bytes) -> None:
        end = time.monotonic() + TRICKLE_FOR_S
        for byte in data:
            if time.monotonic() > end or self.server.stopping.is_set():
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return  # the client gave up: what we want
            time.sleep(0.2)


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    server = Trickler()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.stopping.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


# -- A7: the deadline covers the whole request ------------------------------------------------------


@pytest.mark.parametrize("path", ["/trickle-status", "/trickle-headers", "/trickle-body"])
def test_the_client_deadline_covers_status_line_headers_and_body(trickler, path):
    client = HttpClient(retries=2, backoff_s=0.01, timeout_s=1.5)
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"within 1\.5 s \(deadline for the whole request\)"):
        client.get(trickler.url + path)
    assert time.monotonic() - t0 < 3.0  # cut off at the deadline, and not retried: it would trickle again
    assert trickler.paths.count(path) == 1


def test_a_connection_refused_is_still_retried(trickler):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    client = HttpClient(retries=2, backoff_s=0.01, timeout_s=1.0)
    with pytest.raises(FetchError, match="after 3 attempts"):
        client.get(f"http://127.0.0.1:{port}/x")


@pytest.mark.slow  # four attempts, each waits out its 2 s deadline
def test_gallery_build_is_not_held_by_a_photo_url_trickling_headers(trickler, keys, tmp_path, capsys, jurisdiction):
    trickler.docs["1"] = {"id": "slow", "name": "Slow Photo", "photos": ["/trickle-headers"]}
    (tmp_path / "api.yaml").write_text(
        "fields: {person_id: id, name: name, photos: photos}\nmax_misses: 1\nmin_interval_s: 0\nretries: 0\n"
        "timeout_s: 2\n"
    )
    t0 = time.monotonic()
    code = main(["gallery", "build", trickler.url + "/json/{id}", "--api-config", str(tmp_path / "api.yaml"),
                 "--out", str(tmp_path / "g"), "--key", str(keys[0]), "--jurisdiction", jurisdiction,
                 "--report", str(tmp_path / "r.json"), "--device", "CPU"])  # fmt: skip
    elapsed = time.monotonic() - t0
    assert code == 1, capsys.readouterr().err  # it finishes (nothing enrolled), not hangs
    (row,) = json.loads((tmp_path / "r.json").read_text())["photos"]
    assert (row["status"], row["reason"]) == ("failed", "download_failed") and "deadline" in row["detail"]
    assert elapsed < 45  # four attempts at most (the photo client's retries), each cut off at its deadline


def test_the_bundle_puller_is_not_wedged_by_a_trickling_manifest(trickler, keys, tmp_path):
    puller = BundlePuller(trickler.url, BundleStore(tmp_path / "store"), keys[1], None, Policy.default(), timeout_s=1.5)
    t0 = time.monotonic()
    assert puller.pull_once() is False
    assert time.monotonic() - t0 < 3.0
    assert puller.last_error and "deadline" in puller.last_error and "manifest.json" in puller.last_error


def test_sync_pull_is_not_wedged_by_a_trickling_manifest(trickler, keys, tmp_path, capsys):
    t0 = time.monotonic()
    code = main(["sync", "pull", trickler.url, "--into", str(tmp_path / "store"), "--public-key", str(keys[1]),
                 "--timeout", "2"])  # fmt: skip
    assert code != 0 and time.monotonic() - t0 < 4
    assert "deadline" in capsys.readouterr().err


# -- A5, A6: an HTTP API source that changes under a gallery ----------------------------------------


def _api(trickler: Trickler, work: Path) -> HttpApiSource:
    return HttpApiSource.from_config(
        None,
        url_template=trickler.url + "/json/{id}",
        state_dir=work,
        max_misses=1,
        min_interval_s=0.0,
        retries=0,
        jurisdiction_prefix="US-",
        person_id_prefix="api-",
        fields={"person_id": "id", "name": "name", "jurisdiction": "state", "photos": "images", "photo_url": "url",
                "use_for_recognition": "consent"},
    )  # fmt: skip


def _photos_of(bundle: Path) -> dict[str, tuple[str, str]]:
    """photo_id -> (person_id, photo URL's file name)."""
    conn = sqlite3.connect(bundle / "gallery.sqlite")
    rows = {
        r[0]: (r[1], r[2].rsplit("/", 1)[-1]) for r in conn.execute("SELECT photo_id, person_id, source FROM photos")
    }
    conn.close()
    return rows


@pytest.fixture
def api_people(trickler, faces_dev) -> Trickler:
    for name in ("amy1", "amy2", "amy3", "penny1", "penny2"):
        trickler.files[f"{name}.png"] = (faces_dev / name.rstrip("0123456789") / f"{name}.png").read_bytes()
    trickler.docs["1"] = {
        "id": "p1",
        "name": "Amy",
        "state": "CA",
        "images": [{"url": "/file/amy1.png"}, {"url": "/file/amy2.png"}],
    }
    trickler.docs["2"] = {
        "id": "p2",
        "name": "Penny",
        "state": "CA",
        "images": [{"url": "/file/penny1.png", "id": 71}, {"url": "/file/penny2.png", "id": 72}],
    }
    return trickler  # fmt: skip


def _update(api: Trickler, base: Path, out: Path, work: Path, keys, pipeline, **kwargs) -> BuildReport:
    records = _api(api, work).records()
    return update_gallery(base, records, out, keys[0], pipeline, public_key=keys[1], work_dir=work, progress=False,
                          **kwargs)  # fmt: skip


def test_api_photo_ids_follow_the_photo_not_its_position(api_people, keys, pipeline, tmp_path):
    work = tmp_path / "work"
    build_gallery(_api(api_people, work).records(), tmp_path / "g1", keys[0], pipeline, work_dir=work, progress=False)
    ids = {name: pid for pid, (_person, name) in _photos_of(tmp_path / "g1").items()}
    assert ids["penny1.png"] == "api-p2/71" and ids["penny2.png"] == "api-p2/72"  # the API's own photo ids
    assert not ids["amy1.png"].endswith("/0") and ids["amy1.png"] != ids["amy2.png"]  # from the URL, not the index

    _update(api_people, tmp_path / "g1", tmp_path / "g2", work, keys, pipeline, withdraw=[ids["amy1.png"]])
    api_people.docs["1"]["images"].insert(0, {"url": "/file/amy3.png"})  # a new photo in front
    v3 = _update(api_people, tmp_path / "g2", tmp_path / "g3", work, keys, pipeline)
    names = {name for _person, name in _photos_of(tmp_path / "g3").values()}
    assert "amy1.png" not in names and {"amy2.png", "amy3.png"} <= names  # withdrawn stays out, new one is in
    assert v3.changes["photos_added"] == 1 and v3.embedded == 1


def test_a_reused_work_folder_sees_consent_withdrawn_and_a_move_into_illinois(api_people, keys, pipeline, tmp_path):
    work = tmp_path / "work"
    build_gallery(_api(api_people, work).records(), tmp_path / "g1", keys[0], pipeline, work_dir=work, progress=False)
    assert {person for person, _name in _photos_of(tmp_path / "g1").values()} == {"api-p1", "api-p2"}

    api_people.docs["1"]["images"][1]["consent"] = False  # amy2: consent withdrawn in the API
    api_people.docs["2"]["state"] = "IL"  # Penny now in Illinois
    v2 = _update(api_people, tmp_path / "g1", tmp_path / "g2", work, keys, pipeline)
    assert {name for _person, name in _photos_of(tmp_path / "g2").values()} == {"amy1.png"}
    removed = {(r.person_id, r.reason) for r in v2.results if r.status == "removed"}
    assert removed == {("api-p1", "withdrawn"), ("api-p2", "policy_excluded")}
    assert v2.embedded == 0
