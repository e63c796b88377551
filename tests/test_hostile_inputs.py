"""What the product promises when its inputs are hostile or careless (issue 12).

Each test is one attack that once worked: an over-long person id, an image bomb, an HTTP API
naming local files or trickling bytes, a jurisdiction written so that the Illinois denial missed
it, a department that opted out, a CSV in the wrong encoding, two people under one id. The
promise each time: one clear line naming the input and the reason, and nothing else lost.
Real parts throughout: real models, real loopback HTTP servers, the real CLI.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from lookout.cli import main
from lookout.errors import ConfigError, InputError
from lookout.face.image_io import check_image_size, decode_image, image_size, read_image
from lookout.gallery.jurisdiction import parse_jurisdiction
from lookout.gallery.keys import generate_keys
from lookout.gallery.policy import Policy
from lookout.http_client import FetchError, HttpClient
from lookout.identifiers import ID_MAX_CHARS, identifier_problem
from lookout.sync.build import build_gallery
from lookout.sync.enrol import Enroller
from lookout.sync.records import PhotoRecord, group_persons
from lookout.sync.sources.csv_json import read_manifest_file
from lookout.sync.sources.http_api import HttpApiSource
from tests.helpers import PROJECT_ROOT

# -- helpers ---------------------------------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def bomb(fmt: str, width: int, height: int) -> bytes:
    """A small file of ``fmt`` whose header declares width x height, made from a real 8x8 image."""
    small = np.full((8, 8, 3), 128, np.uint8)
    if fmt == "PNG":
        return png_header(width, height)
    if fmt == "JPEG":
        data = bytearray(cv2.imencode(".jpg", small)[1].tobytes())
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
        return bytes(data)
    if fmt == "BMP":
        data = bytearray(cv2.imencode(".bmp", small)[1].tobytes())
        data[18:26] = struct.pack("<ii", width, height)
        return bytes(data)
    if fmt == "WebP":  # VP8X extended header: 24-bit canvas size minus one
        data = bytearray(b"RIFF\0\0\0\0WEBPVP8X" + b"\x0a\0\0\0" + b"\0" * 10)
        data[24:27] = (width - 1).to_bytes(3, "little")
        data[27:30] = (height - 1).to_bytes(3, "little")
        return bytes(data)
    if fmt == "TIFF":
        entries = [(256, 4, 1, width), (257, 4, 1, height)]
        ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
        return b"II*\x00" + struct.pack("<I", 8) + ifd
    if fmt == "GIF":
        return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"
    raise ValueError(fmt)


class Handler(BaseHTTPRequestHandler):
    """Routes: /cases/<id> (JSON from ``cases``), /img/<name> (``photos``), /trickle, /huge,
    /liar (Content-Length 10 GB), /redirect?to=<url>, /loop."""

    server: ThreadingHTTPServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.paths.append(self.path)  # type: ignore[attr-defined]
        if self.path.startswith("/cases/"):
            doc = srv.cases.get(self.path.rsplit("/", 1)[1])  # type: ignore[attr-defined]
            return self._send(200 if doc else 404, json.dumps(doc or {}).encode())
        if self.path.startswith("/img/"):
            photo = srv.photos.get(self.path.removeprefix("/img/"))  # type: ignore[attr-defined]
            return self._send(200 if photo else 404, photo or b"no")
        if self.path == "/trickle":  # 8 bytes at a time, for up to 40 s
            self.send_response(200)
            self.send_header("Content-Length", "400")
            self.end_headers()
            for _ in range(50):
                try:
                    self.wfile.write(b"8 bytes!")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.8)
            return
        if self.path == "/huge":  # no Content-Length, more bytes than any cap
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(4096):
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
            return
        if self.path == "/liar":
            self.send_response(200)
            self.send_header("Content-Length", str(10 << 30))
            self.end_headers()
            return
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.end_headers()
            return
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
            return
        self._send(404, b"no")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(grace_hopper):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.paths = []  # type: ignore[attr-defined]
    httpd.cases = {}  # type: ignore[attr-defined]
    httpd.photos = {"grace.jpg": cv2.imencode(".jpg", grace_hopper)[1].tobytes()}  # type: ignore[attr-defined]
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


def logged(caplog, event: str) -> list[dict]:
    """The fields of each structured log line ``event`` captured by ``caplog``."""
    return [getattr(r, "lookout_fields", {}) for r in caplog.records if r.getMessage() == event]


def _results(report) -> dict[str, tuple[str, str | None, str]]:
    return {r.photo_id: (r.status, r.reason, r.detail) for r in report.results}


# -- 1. identifiers ---------------------------------------------------------------------------------


def test_identifier_limit_is_the_event_schemas():
    schema = json.loads((PROJECT_ROOT / "schemas" / "match-event.v1.json").read_text())
    assert schema["$defs"]["text"]["maxLength"] == ID_MAX_CHARS
    assert identifier_problem("x" * ID_MAX_CHARS) is None
    assert "129 characters" in identifier_problem("x" * (ID_MAX_CHARS + 1))
    assert "U+200B" in identifier_problem("alice\u200b")  # looks like "alice" to a reviewer
    assert "control" in identifier_problem("a\nb")


def test_build_refuses_an_id_no_event_can_carry_and_enrols_the_rest(
    tmp_path, pipeline, grace_hopper, astronaut, keys, jurisdiction
):
    cv2.imwrite(str(tmp_path / "g.jpg"), grace_hopper)
    cv2.imwrite(str(tmp_path / "e.jpg"), astronaut)
    long_id = "p" * 200
    (tmp_path / "m.csv").write_text(f"person_id,name,photo\n{long_id},Long Id,g.jpg\nok-1,Eileen,e.jpg\n")
    report = build_gallery(
        read_manifest_file(tmp_path / "m.csv"), tmp_path / "b", keys[0], pipeline, progress=False,
        report_path=tmp_path / "report.csv", jurisdiction=jurisdiction,
    )  # fmt: skip
    results = {r.person_id: r for r in report.results}
    assert results[long_id].status == "failed" and results[long_id].reason == "bad_identifier"
    assert "200 characters" in results[long_id].detail
    assert results["ok-1"].status == "enrolled"
    assert report.manifest.counts == {"persons": 1, "photos": 1}
    assert "bad_identifier" in (tmp_path / "report.csv").read_text()


def test_policy_version_too_long_for_events_is_refused():
    with pytest.raises(ConfigError, match="version is 300 characters long"):
        Policy.from_dict({"version": "v" * 300})


# -- 2. image bombs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WebP", "BMP", "TIFF", "GIF"])
def test_image_size_is_read_from_the_header_before_decoding(fmt):
    data = bomb(fmt, 60_000, 60_000)
    assert image_size(data) == (fmt, 60_000, 60_000)
    with pytest.raises(InputError, match=r"bomb\.x: image too large: .*60000x60000.*refused before decoding"):
        decode_image(data, "bomb.x")
    assert check_image_size(bomb(fmt, 640, 480), "ok.x") == (640, 480)


def test_real_images_of_every_format_still_decode(grace_hopper):
    from PIL import Image

    for ext in (".png", ".jpg", ".webp", ".bmp", ".tif", ".ppm"):
        data = cv2.imencode(ext, grace_hopper)[1].tobytes()
        assert decode_image(data, f"g{ext}").shape == grace_hopper.shape
    buf = io.BytesIO()
    Image.fromarray(grace_hopper[:, :, ::-1]).save(buf, "GIF")
    assert decode_image(buf.getvalue(), "g.gif").shape == grace_hopper.shape


def test_pixel_limit_is_configurable(grace_hopper):
    data = cv2.imencode(".png", grace_hopper)[1].tobytes()
    h, w = grace_hopper.shape[:2]
    assert decode_image(data, "g.png", max_pixels=w * h).shape == grace_hopper.shape
    with pytest.raises(InputError, match="too large"):
        decode_image(data, "g.png", max_pixels=w * h - 1)


def test_unknown_format_and_devices_are_refused_without_reading(tmp_path):
    with pytest.raises(InputError, match="not one of PNG, JPEG"):
        decode_image(b"P7\nWIDTH 9\n" + b"\0" * 100, "pam.pam")  # a format this module does not size
    with pytest.raises(InputError, match="/dev/zero: not a regular file"):
        read_image("/dev/zero")
    with pytest.raises(InputError, match="is a directory"):
        read_image(tmp_path)


@pytest.mark.parametrize("command", ["detect", "embed"])
def test_cli_refuses_a_bomb_in_one_line_and_goes_on(tmp_path, command, grace_hopper, model_store, capsys):
    (tmp_path / "bomb.png").write_bytes(png_header(60_000, 60_000))
    cv2.imwrite(str(tmp_path / "grace.jpg"), grace_hopper)
    code = main(
        [
            command,
            "--jurisdiction",
            "US-CA",
            str(tmp_path / "bomb.png"),
            str(tmp_path / "grace.jpg"),
            "--device",
            "CPU",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    problems = [line for line in err.splitlines() if line.startswith("lookout:")]  # (log lines aside)
    assert len(problems) == 1 and "bomb.png: image too large" in problems[0] and "Traceback" not in err
    assert json.loads(out.strip().splitlines()[-1])["faces"]  # the good image was still processed


def test_gallery_build_goes_on_past_a_bomb(tmp_path, pipeline, grace_hopper, keys, jurisdiction):
    (tmp_path / "bomb.png").write_bytes(png_header(20_000, 20_000))
    cv2.imwrite(str(tmp_path / "grace.jpg"), grace_hopper)
    (tmp_path / "m.csv").write_text("person_id,name,photo\nx,Bomb,bomb.png\ng,Grace,grace.jpg\n")
    report = build_gallery(
        read_manifest_file(tmp_path / "m.csv"), tmp_path / "b", keys[0], pipeline, progress=False,
        jurisdiction=jurisdiction,
    )  # fmt: skip
    results = _results(report)
    assert results["x/bomb.png"][:2] == ("failed", "unreadable") and "20000x20000" in results["x/bomb.png"][2]
    assert results["g/grace.jpg"][0] == "enrolled"


def test_device_folder_source_skips_a_bomb(tmp_path, grace_hopper, caplog):
    from lookout.device.sources import open_source

    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "0-bomb.png").write_bytes(png_header(60_000, 60_000))
    cv2.imwrite(str(folder / "1-grace.jpg"), grace_hopper)
    source = open_source(str(folder))
    source.open()
    image, _pts = source.read()
    assert image.shape == grace_hopper.shape
    assert source.read() is None
    (fields,) = logged(caplog, "source.unreadable_image")
    assert fields["path"].endswith("0-bomb.png") and "image too large" in fields["reason"]


# -- 4. HTTP sources -------------------------------------------------------------------------------


def _api_source(server, state: Path, **overrides) -> HttpApiSource:
    return HttpApiSource.from_config(
        None,
        url_template=server.url + "/cases/{id}",
        state_dir=state,
        max_misses=2,
        min_interval_s=0.0,
        retries=0,
        timeout_s=5,
        fields={"person_id": "id", "name": "name", "photos": "photos"},
        **overrides,
    )


def test_api_photo_urls_never_reach_local_files(server, tmp_path, pipeline, keys, jurisdiction):
    server.cases["1"] = {"id": "a", "name": "Dev Zero", "photos": ["/dev/zero"]}
    server.cases["2"] = {"id": "b", "name": "Passwd", "photos": ["../../../../etc/passwd"]}
    server.cases["3"] = {"id": "c", "name": "File URL", "photos": ["file:///etc/passwd"]}
    server.cases["4"] = {"id": "d", "name": "Grace", "photos": ["/img/grace.jpg"]}  # relative: on the API host
    server.cases["5"] = {"id": "e", "name": "FTP", "photos": ["ftp://127.0.0.1/x.jpg"]}
    records = list(_api_source(server, tmp_path / "work", jurisdiction=jurisdiction).records())
    report = build_gallery(records, tmp_path / "b", keys[0], pipeline, work_dir=tmp_path / "work", progress=False)
    results = {r.person_id: (r.status, r.reason, r.detail) for r in report.results}  # one photo each
    assert results["a"][:2] == ("failed", "download_failed")  # asked the API host for /dev/zero: 404
    assert results["b"][:2] == ("failed", "download_failed")  # resolved to http://host/etc/passwd: 404
    assert results["c"][:2] == ("failed", "bad_photo_url") and "only http and https" in results["c"][2]
    assert results["e"][:2] == ("failed", "bad_photo_url")
    assert results["d"][0] == "enrolled"
    assert "/dev/zero" in server.paths and "/etc/passwd" in server.paths  # asked of the server, never read here


def test_http_client_refuses_other_schemes_and_bad_redirects(server):
    client = HttpClient(retries=0, timeout_s=5)
    for url in ("file:///etc/passwd", "/etc/passwd", "ftp://127.0.0.1/x"):
        with pytest.raises(FetchError, match="only http and https"):
            client.get(url)
    with pytest.raises(FetchError, match="redirect to 'file:///etc/passwd' refused"):
        client.get(server.url + "/redirect?to=file:///etc/passwd")
    assert client.get(server.url + "/redirect?to=/img/grace.jpg")[:3] == b"\xff\xd8\xff"  # http(s) redirects work
    with pytest.raises(FetchError, match="more than 5 redirects"):
        client.get(server.url + "/loop")


@pytest.mark.slow
def test_http_client_caps_size_and_total_time(server):
    client = HttpClient(retries=0, timeout_s=2.0, max_bytes=1 << 20)
    with pytest.raises(FetchError, match="larger than 1048576 bytes"):
        client.get(server.url + "/huge")
    with pytest.raises(FetchError, match="Content-Length"):
        client.get(server.url + "/liar")
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="within 2 s"):
        client.get(server.url + "/trickle")  # 8 bytes every 0.8 s for 40 s
    assert time.monotonic() - t0 < 4.0
    patient = HttpClient(retries=3, backoff_s=0.01, timeout_s=1.5)
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"within 1\.5 s"):
        patient.get(server.url + "/trickle")  # a trickling body is not retried: it would trickle again
    assert time.monotonic() - t0 < 3.5 and server.paths.count("/trickle") == 2


def test_building_into_a_full_out_folder_refuses_before_walking_the_api(server, tmp_path, keys, capsys):
    server.cases["1"] = {"id": "a", "name": "A", "photos": ["/img/grace.jpg"]}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    code = main(["gallery", "build", server.url + "/cases/{id}", "--out", str(tmp_path / "out"), "--key", str(keys[0])])
    assert code == 2 and "output folder exists and is not empty" in capsys.readouterr().err
    assert server.paths == []


# -- 5. jurisdictions --------------------------------------------------------------------------------

ILLINOIS_SPELLINGS = [
    "US-IL",
    "us-il",
    "Illinois",
    "ILLINOIS",
    "USA-IL",
    "US IL",
    "US_IL",
    "US\u2010IL",  # Unicode hyphen
    "US\u2013IL",  # en dash
    "US\u2212IL",  # minus sign
    "US-IL\u200b",  # zero-width space after
    "U\u200bS-I\u200dL",  # zero-width characters inside
    "\ufeffUS-IL",  # byte-order mark
    "\uff35\uff33\uff0d\uff29\uff2c",  # fullwidth ＵＳ－ＩＬ
    " US-IL ",
    "Illinois, USA",
    "US-Illinois",
    "U.S.-IL",
    "US-IL-COOK",
]


@pytest.mark.parametrize("text", ILLINOIS_SPELLINGS)
def test_every_spelling_of_illinois_is_denied(text):
    code = parse_jurisdiction(text).code
    assert code == "US-IL" or code.startswith("US-IL-")
    decision = Policy.default().decide(text)
    assert not decision.allowed and "BIPA" in decision.reason


@pytest.mark.parametrize("text", ["Atlantis", "US-XX", "XX", "Ill.", "1234", "US-IL; DROP TABLE", "\u200b"])
def test_unreadable_jurisdiction_is_denied_with_a_reason(text):
    decision = Policy.default().decide(text)
    assert not decision.allowed
    assert "fail closed" in decision.reason or "empty" in decision.reason or "unknown" in decision.reason


def test_ambiguous_code_is_denied_when_any_reading_is():
    decision = Policy.default().decide("IL")  # Israel's ISO code, Illinois' USPS code
    assert not decision.allowed and "IL or US-IL" in decision.reason
    assert Policy.default().allows("DE") and Policy.default().allows("NY") and Policy.default().allows("GB")
    assert parse_jurisdiction("NY").code == "US-NY" and parse_jurisdiction(" de ").code == "DE"


def test_enrolment_denies_spelled_out_illinois_and_unknown_codes(tmp_path):
    """Excluded records are never fetched or decoded: the photo path does not even exist."""
    enroller = Enroller(pipeline=None, policy=Policy.default())  # type: ignore[arg-type]
    for jurisdiction in ("Illinois", "US\u2010IL", "US-IL\u200b", "Atlantis"):
        rec = PhotoRecord(person_id="p", name="P", photo=str(tmp_path / "missing.jpg"), jurisdiction=jurisdiction)
        result = enroller.enrol(rec)
        assert (result.status, result.reason) == ("excluded", "policy_excluded"), jurisdiction
    assert PhotoRecord(person_id="p", name="P", photo="x.jpg", jurisdiction="us il").jurisdiction == "US-IL"


def test_policy_rules_are_normalised_and_unreadable_rules_refused(tmp_path):
    policy = Policy.from_dict({"version": "p", "rules": [{"jurisdiction": "Illinois", "decision": "deny"}]})
    assert policy.doc.rules[0].jurisdiction == "US-IL" and not policy.allows("US IL")
    with pytest.raises(ConfigError, match=r"rules\.0\.jurisdiction.*Atlantis"):
        Policy.from_dict({"version": "p", "rules": [{"jurisdiction": "Atlantis", "decision": "deny"}]})


DEVICE_BASE = """
device_id: cam-1
source: {url: video.mp4}
gallery: {bundle_dir: bundle, public_key: key.pem}
"""


@pytest.mark.parametrize("text", ["Illinois", "US IL", "US\u2010IL", "US-IL\u200b", "IL"])
def test_device_config_at_illinois_fails_check_config(tmp_path, text):
    from lookout.device.check import check_config
    from lookout.device.config import load_config

    (tmp_path / "device.yaml").write_text(DEVICE_BASE)
    cfg = load_config(tmp_path / "device.yaml", environ={}, overrides=[f"location.jurisdiction={text}"])
    lines: list[str] = []
    assert check_config(cfg, out=lines.append) == 2
    (policy_line,) = [line for line in lines if line.startswith("FAIL  jurisdiction")]
    assert "not allowed where this device is" in policy_line and "US-IL" in policy_line


def test_device_config_with_unreadable_jurisdiction_is_refused(tmp_path):
    from lookout.device.config import load_config

    (tmp_path / "device.yaml").write_text(DEVICE_BASE)
    with pytest.raises(ConfigError, match=r"location\.jurisdiction: .*unknown.*'Atlantis'"):
        load_config(tmp_path / "device.yaml", environ={}, overrides=["location.jurisdiction=Atlantis"])


# -- 7. departments --------------------------------------------------------------------------------


def test_rules_by_department_or_jurisdiction_or_both():
    policy = Policy.from_dict(
        {
            "version": "depts",
            "rules": [
                {"department": "Springfield Police Department", "decision": "deny", "reason": "opted out"},
                {"jurisdiction": "US-CA", "department": "Oakland PD", "decision": "deny"},
                {"jurisdiction": "US-IL", "decision": "deny"},
            ],
        }
    )
    assert not policy.allows("US-OR", department="springfield  police department")  # case and blanks
    assert not policy.allows("US-OR", department="Spring\u200bfield Police Department")  # zero-width space
    assert not policy.allows("US-OR", department="Springfield P\u043elice Department")  # Cyrillic o
    assert not policy.allows(None, department="Springfield Police Department")  # no jurisdiction: still denied
    assert "opted out" in policy.decide("US-OR", department="Springfield Police Department").reason
    assert not policy.allows("US-CA", department="Oakland PD") and policy.allows("US-NY", department="Oakland PD")
    assert policy.allows("US-CA", department="LAPD") and not policy.allows("US-IL", department="LAPD")
    with pytest.raises(ConfigError, match="a rule needs a jurisdiction, a department, or both"):
        Policy.from_dict({"version": "x", "rules": [{"decision": "deny"}]})


def test_enrolment_honours_a_department_opt_out(tmp_path):
    policy = Policy.from_dict({"version": "d", "rules": [{"department": "Springfield PD", "decision": "deny"}]})
    enroller = Enroller(pipeline=None, policy=policy)  # type: ignore[arg-type]
    rec = PhotoRecord(person_id="o1", name="Officer", photo="x.jpg", jurisdiction="US-OR", department="Springfield PD")
    result = enroller.enrol(rec)
    assert (result.status, result.reason) == ("excluded", "policy_excluded") and "Springfield PD" in result.detail


# -- 8. withdrawn consent ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def consent_v1(tmp_path_factory, pipeline, grace_hopper, astronaut, keys):
    """v1: grace (two photos), eileen, mirror (eileen flipped) -- all US-NY."""
    root = tmp_path_factory.mktemp("consent")
    cv2.imwrite(str(root / "g1.jpg"), grace_hopper)
    cv2.imwrite(str(root / "g2.jpg"), cv2.resize(grace_hopper, None, fx=0.8, fy=0.8))
    cv2.imwrite(str(root / "e.jpg"), astronaut)
    cv2.imwrite(str(root / "m.jpg"), cv2.flip(astronaut, 1))
    rows = [
        ("grace", "Grace", "g1.jpg", "US-NY"),
        ("grace", "Grace", "g2.jpg", "US-NY"),
        ("eileen", "Eileen", "e.jpg", "US-NY"),
        ("mirror", "Mirror", "m.jpg", "US-NY"),
    ]
    (root / "v1.csv").write_text("person_id,name,photo,jurisdiction\n" + "".join(",".join(r) + "\n" for r in rows))
    build_gallery(read_manifest_file(root / "v1.csv"), root / "v1", keys[0], pipeline, progress=False)
    return root, rows


def test_withdrawn_consent_moved_and_vanished_people_leave_the_gallery(consent_v1, pipeline, keys, tmp_path):
    from lookout.gallery.delta import read_delta
    from lookout.gallery.reader import load_bundle
    from lookout.sync.build import update_gallery

    root, _rows = consent_v1
    text = "person_id,name,photo,jurisdiction,use_for_recognition\n"
    text += f"grace,Grace,{root}/g1.jpg,US-NY,false\n"  # consent withdrawn for one photo
    text += f"grace,Grace,{root}/g2.jpg,US-NY,true\n"
    text += f"eileen,Eileen,{root}/e.jpg,Illinois,true\n"  # moved into a denied jurisdiction
    (tmp_path / "v2.csv").write_text(text)  # mirror is gone from the source
    report = update_gallery(
        root / "v1", read_manifest_file(tmp_path / "v2.csv"), tmp_path / "v2", keys[0], pipeline,
        public_key=keys[1], progress=False, report_path=tmp_path / "report.json",
    )  # fmt: skip
    removed = {r.photo_id: (r.reason, r.detail) for r in report.results if r.status == "removed"}
    assert removed["grace/g1.jpg"][0] == "withdrawn"
    assert removed["eileen/e.jpg"][0] == "policy_excluded" and "BIPA" in removed["eileen/e.jpg"][1]
    assert removed["mirror/m.jpg"][0] == "left_source"
    assert set(removed) == {"grace/g1.jpg", "eileen/e.jpg", "mirror/m.jpg"}
    doc, _vectors = read_delta(tmp_path / "v2")
    assert sorted(doc.remove_photos) == sorted(removed) and sorted(doc.remove_persons) == ["eileen", "mirror"]
    gallery = load_bundle(tmp_path / "v2", keys[1], pipeline.embedder.digest, None)
    assert [p["person_id"] for p in gallery.persons()] == ["grace"] and gallery.count_photos == 1
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["summary"]["removed_reasons"] == {"left_source": 1, "policy_excluded": 1, "withdrawn": 1}
    assert "3 photos removed from the gallery" in summary["summary_line"]
    assert "0 of 0" not in report.summary_line and "no photo to enrol" in report.summary_line


def test_withdraw_by_photo_id_as_the_console_does(consent_v1, pipeline, keys, tmp_path):
    from lookout.sync.build import update_gallery

    root, _rows = consent_v1
    report = update_gallery(
        root / "v1", read_manifest_file(root / "v1.csv"), tmp_path / "v2", keys[0], pipeline,
        withdraw=["mirror/m.jpg"], progress=False,
    )  # fmt: skip
    assert [(r.photo_id, r.reason) for r in report.results if r.status == "removed"] == [("mirror/m.jpg", "withdrawn")]
    assert report.changes["persons_removed"] == 1 and report.manifest.counts["persons"] == 2


def test_a_withdrawal_survives_the_next_update_from_an_unchanged_source(consent_v1, pipeline, keys, tmp_path):
    """The console's withdraw button: the source still lists the photo; the bundle remembers it is withdrawn."""
    from lookout.gallery import metadata
    from lookout.gallery.delta import apply_delta, read_delta
    from lookout.gallery.verify import check_files, read_manifest
    from lookout.sync.build import update_gallery

    root, _rows = consent_v1
    records = read_manifest_file(root / "v1.csv")
    update_gallery(root / "v1", records, tmp_path / "v2", keys[0], pipeline, withdraw=["grace/g1.jpg"],
                   remove=["mirror"], progress=False)  # fmt: skip
    doc, vectors = read_delta(tmp_path / "v2")
    assert [row[:2] for row in doc.withdraw if row[0] != "sha256"] == [["photo", "grace/g1.jpg"], ["person", "mirror"]]
    # and their bytes (attack A1): the same photo under another name or id stays out too
    assert {row[2].split(":")[0] for row in doc.withdraw if row[0] == "sha256"} == {
        "photo grace/g1.jpg",
        "person mirror",
    }
    # a device applying the delta rebuilds the published files byte for byte, ledger included
    applied = tmp_path / "applied"
    apply_delta(root / "v1", read_manifest(root / "v1")[0], doc, vectors, applied)
    shutil.copyfile(tmp_path / "v2" / "policy.json", applied / "policy.json")
    check_files(applied, read_manifest(tmp_path / "v2")[0].files)
    v3 = update_gallery(tmp_path / "v2", records, tmp_path / "v3", keys[0], pipeline, progress=False)
    assert v3.embedded == 0 and v3.changes["photos_added"] == 0 and v3.changes["persons_added"] == 0
    conn = metadata.connect_readonly(tmp_path / "v3" / "gallery.sqlite")
    assert {p["photo_id"] for p in metadata.photos(conn)} == {"grace/g2.jpg", "eileen/e.jpg"}
    ledger = {key for key in metadata.withdrawn(conn) if key[0] != "sha256"}
    assert ledger == {("photo", "grace/g1.jpg"), ("person", "mirror")}
    conn.close()
    v4 = update_gallery(tmp_path / "v3", records, tmp_path / "v4", keys[0], pipeline, reinstate=["mirror"],
                        progress=False)  # fmt: skip
    assert v4.changes["persons_added"] == 1 and v4.manifest.counts["persons"] == 3


# -- 12. CSV encodings and conflicting records -------------------------------------------------------


def test_non_utf8_csv_names_file_and_line_and_encoding_option_reads_it(tmp_path, capsys, keys):
    manifest = tmp_path / "people.csv"
    manifest.write_bytes("person_id,name,photo\np1,Ann,a.jpg\np2,Zoë Müller,b.jpg\n".encode("cp1252"))
    with pytest.raises(InputError, match=r"people\.csv:3: not valid utf-8-sig text .*--encoding"):
        read_manifest_file(manifest)
    assert read_manifest_file(manifest, "cp1252")[1].name == "Zoë Müller"
    code = main(["gallery", "build", str(manifest), "--out", str(tmp_path / "b"), "--key", str(keys[0])])
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if line.startswith("lookout:")]
    assert code == 2 and len(problems) == 1 and "people.csv:3" in problems[0] and "Traceback" not in err
    with pytest.raises(InputError, match="unknown text encoding 'klingon'"):
        read_manifest_file(manifest, "klingon")


def test_same_person_id_with_two_names_is_a_conflict(tmp_path):
    (tmp_path / "m.csv").write_text(
        "person_id,name,photo,jurisdiction\np1,Ann Smith,a.jpg,US-NY\np1,Bob Jones,b.jpg,US-NY\n"
        "p1,ann  smith,c.jpg,New York\np1,Ann Smith,d.jpg,US-IL\n"
    )
    persons = group_persons(read_manifest_file(tmp_path / "m.csv"))
    photos = {p.key: p for p in persons["p1"].photos}
    assert persons["p1"].name == "Ann Smith"
    assert photos["p1/a.jpg"].problem() is None and photos["p1/c.jpg"].problem() is None  # same name, same state
    reason, detail = photos["p1/b.jpg"].problem()
    assert reason == "conflicting_record" and "'Bob Jones'" in detail and "m.csv:2" in detail
    assert photos["p1/d.jpg"].problem()[0] == "conflicting_record"  # a second jurisdiction for one person
    result = Enroller(pipeline=None, policy=Policy.default()).enrol(photos["p1/b.jpg"])  # type: ignore[arg-type]
    assert (result.status, result.reason) == ("failed", "conflicting_record")


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_cli_takes_no_abbreviations_and_device_is_the_openvino_device():
    """``lookout run --device CPU`` was silently taken as ``--device-id CPU`` (an argparse abbreviation)."""
    from lookout.cli.main import build_parser

    parser = build_parser()
    parsers = list(_parsers(parser))
    assert len(parsers) > 30 and all(p.allow_abbrev is False for p in parsers)
    args = parser.parse_args(["run", "--device", "CPU", "--source", "x.mp4"])
    assert args.device == "CPU" and args.device_id is None
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--device-i", "cam1"])
    for command in (
        ["detect", "--jurisdiction", "US-CA", "x.jpg"],
        ["embed", "--jurisdiction", "US-CA", "x.jpg"],
        ["search", "--jurisdiction", "US-CA", "x.jpg", "--gallery", "g"],
    ):
        assert parser.parse_args([*command, "--device", "CPU"]).device == "CPU"


def test_summary_counts_read_as_english():
    from lookout.sync.enrol import PhotoResult
    from lookout.sync.report import summarise, summary_line

    one = summary_line(summarise([PhotoResult("p/1", "p", "1.jpg", "enrolled")]))
    assert one.startswith("enrolled 1 of 1 photo (100.0%) and 1 of 1 person (100.0%)")
    assert "0 photos of 0 people excluded" in one
    assert summary_line(summarise([])).startswith("no photo to enrol (nothing new or changed)")


def test_json_nested_too_deeply_is_one_clear_refusal(tmp_path, server):
    """``[[[[...`` 60,000 deep raises RecursionError in json.loads: a hostile device could take the relay's
    message thread down with it, a hostile API or publish server the gallery build or the puller."""
    from lookout.events import parse_match_event
    from lookout.gallery.format import BundleError, parse_manifest

    deep = b"[" * 60_000
    with pytest.raises(InputError, match="nested too deeply"):
        parse_match_event(deep, "message on dt/lookout/x/match")
    with pytest.raises(BundleError, match="not JSON"):
        parse_manifest(deep, "publish")
    (tmp_path / "m.json").write_bytes(deep)
    with pytest.raises(InputError, match="nested too deeply"):
        read_manifest_file(tmp_path / "m.json")
    server.photos["deep.json?1"] = deep
    source = _api_source(server, tmp_path / "work")
    source.config = source.config.model_copy(update={"url_template": server.url + "/img/deep.json?{id}"})
    with pytest.raises(FetchError, match="nested too deeply"):
        source.fetch(1)


def test_withdrawing_an_unknown_photo_id_is_refused_not_ignored(consent_v1, pipeline, keys, tmp_path):
    """A typo in the photo id would leave in place the photo whose consent was withdrawn: refuse, say which."""
    from lookout.sync.build import update_gallery

    root, _rows = consent_v1
    with pytest.raises(InputError, match=r"'grace/g1\.jpeg'.*nothing was changed"):
        update_gallery(root / "v1", read_manifest_file(root / "v1.csv"), tmp_path / "v2", keys[0], pipeline,
                       withdraw=["grace/g1.jpeg"], progress=False)  # fmt: skip
    assert not (tmp_path / "v2").exists()
