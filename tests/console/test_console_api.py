"""The console over HTTP (Starlette's TestClient, the real app, real models, a real relay store and gallery)."""

from __future__ import annotations

import json
import re
import sqlite3
import ssl
import struct
import time
import zlib

import cv2
import pytest
from starlette.testclient import TestClient

from lookout.console.app import Services, create_app
from lookout.console.audit import AuditFilter
from lookout.gallery import metadata
from lookout.relay.store import SqliteStore
from tests.helpers import wait_for
from tests.relay_helpers import publish

pytestmark = pytest.mark.slow  # each test starts a console on a fresh copy of its data (~2 s)

PASSWORD = "correct horse battery"  # the accounts made by conftest.console_env

PAGES = ["/review", "/search", "/galleries", "/galleries/default", "/fleet", "/audit", "/accounts"]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD):
    page = client.get("/login")
    return client.post(
        "/login", data={"username": username, "password": password, "csrf": _csrf(page.text)}, follow_redirects=False
    )


@pytest.fixture
def client(services):
    with TestClient(create_app(services), base_url="http://127.0.0.1") as c:
        yield c


def _user(client: TestClient, name: str) -> str:
    assert login(client, name).status_code == 303
    return _csrf(client.get("/galleries").text) if name != "rita" else _csrf(client.get("/search").text)


def _jpeg(image) -> bytes:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


# -- nothing without logging in -------------------------------------------------------------


def test_nothing_is_visible_without_a_session(client, console_env):
    alert = console_env.alert("grace_hopper")
    for path in [*PAGES, f"/review/{alert}", "/audit.csv", "/galleries/default/photo.jpg?id=grace_hopper/1.jpg"]:
        r = client.get(path, follow_redirects=False)
        assert r.status_code in (303, 401), path
        assert "Grace" not in r.text
    assert client.get(f"/alerts/{alert}/crop.jpg", follow_redirects=False).status_code == 401
    r = client.post(f"/review/{alert}/confirm", data={"csrf": "x"}, follow_redirects=False)
    assert r.status_code == 401


def test_login_sets_a_strict_http_only_cookie_and_pages_carry_security_headers(client):
    r = login(client, "rita")
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "lookout_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/review")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # no inline script anywhere


def test_wrong_password_then_lockout_even_with_the_right_one(client):
    for _ in range(5):
        r = login(client, "rita", "wrong password!!")
        assert r.status_code == 401
        assert "Wrong user name or password" in r.text
    r = login(client, "rita")
    assert r.status_code == 401
    assert "Too many failed logins" in r.text


def test_login_and_forms_refuse_a_missing_or_foreign_csrf_token(client, console_env):
    client.get("/login")
    r = client.post("/login", data={"username": "rita", "password": PASSWORD, "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    assert login(client, "rita").status_code == 303
    alert = console_env.alert("grace_hopper")
    r = client.post(f"/review/{alert}/confirm", data={"csrf": "forged"})
    assert r.status_code == 403
    store = SqliteStore(console_env.relay_store)
    assert store.get_alert(alert).status == "review"
    store.close()


def test_logout_ends_the_session(client):
    csrf = _user(client, "rita")
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_roles_limit_what_each_account_may_do(client, console_env):
    csrf = _user(client, "gus")
    assert client.get("/review").status_code == 403
    assert client.get("/audit").status_code == 403
    assert client.get("/galleries/default").status_code == 200
    client.cookies.clear()
    csrf = _user(client, "rita")
    assert client.get("/accounts").status_code == 403
    r = client.post("/galleries/default/withdraw", data={"csrf": csrf, "photo_id": "grace_hopper/2.jpg", "reason": "x"})
    assert r.status_code == 403
    assert sorted(p.name for p in (console_env.published / "v").iterdir()) == ["1"]


# -- review ---------------------------------------------------------------------------------


def test_review_shows_the_evidence_and_confirm_releases_the_alert(client, console_env):
    first = console_env.alert("grace_hopper", "cam-1", 0.95)
    console_env.alert("grace_hopper", "cam-2", 0.97)  # folded into the same alert
    csrf = _user(client, "rita")
    r = client.get("/review", follow_redirects=False)
    assert r.headers["location"] == f"/review/{first}"
    page = client.get(f"/review/{first}").text
    assert "Grace Hopper" in page and "US-NY" in page
    assert "0.970" in page and "margin over the next person 0.200" in page
    sightings = page.split('id="sightings"')[1].split("</table>")[0]
    assert sightings.count("<td>cam-") == 2  # both sightings listed
    assert f"/alerts/{first}/crop.jpg" in page
    crop = client.get(f"/alerts/{first}/crop.jpg")
    assert crop.headers["content-type"] == "image/jpeg" and crop.content[:3] == b"\xff\xd8\xff"
    photo = client.get("/galleries/default/photo.jpg?id=grace_hopper/1.jpg")
    assert photo.status_code == 200 and photo.content[:3] == b"\xff\xd8\xff"
    r = client.post(f"/review/{first}/confirm", data={"csrf": csrf, "note": "same scar"}, follow_redirects=False)
    assert r.status_code == 303
    store = SqliteStore(console_env.relay_store)
    try:
        alert = store.get_alert(first)
        assert alert.status == "confirmed" and alert.reviewed_by == "rita" and alert.review_reason == "same scar"
        assert [d.status for d in store.deliveries_of(first)] == ["pending"]
    finally:
        store.close()
    client.cookies.clear()
    _user(client, "admin")
    audit = client.get("/audit?action=review").text
    assert "review.confirm" in audit and "rita" in audit and "same scar" in audit


def test_reject_needs_a_reason_and_suppresses_the_person_at_the_camera(client, console_env):
    alert_id = console_env.alert("eileen_collins", "cam-3")
    csrf = _user(client, "rita")
    r = client.post(f"/review/{alert_id}/reject", data={"csrf": csrf, "reason": "   "})
    assert r.status_code == 400 and "Give a reason" in r.text
    r = client.post(
        f"/review/{alert_id}/reject",
        data={"csrf": csrf, "reason": "not this person: staff member", "suppress": "on"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    store = SqliteStore(console_env.relay_store)
    try:
        alert = store.get_alert(alert_id)
        assert alert.status == "rejected" and alert.review_reason == "not this person: staff member"
        assert [d.status for d in store.deliveries_of(alert_id)] == ["cancelled"]
    finally:
        store.close()
    later = console_env.ingest("eileen_collins", "cam-3", seen_at=time.time() + 120)  # after the dedup window
    assert later.outcome.value == "suppressed" and later.alert_id is None
    r = client.post(f"/review/{alert_id}/confirm", data={"csrf": csrf}, follow_redirects=True)
    assert "not awaiting review" in r.text


# -- search ---------------------------------------------------------------------------------


def _search(client, csrf, data: bytes, name: str = "probe.jpg", **fields):
    return client.post(
        "/search",
        data={"csrf": csrf, "gallery": "default", **fields},
        files={"photo": (name, data, "application/octet-stream")} if data is not None else None,
    )


def test_search_by_photo_names_the_person_above_the_threshold_and_is_audited(client, console_env):
    csrf = _user(client, "rita")
    r = _search(client, csrf, _jpeg(cv2.resize(console_env.grace, (400, 500))))
    assert r.status_code == 200, r.text
    assert "Grace Hopper" in r.text
    assert "above threshold" in r.text
    assert "gallery of 2 people (3 photos)" in r.text
    assert "not calibrated" in r.text or "predicted" in r.text
    upload = re.search(r'/search/upload/([^".]+)\.jpg', r.text).group(1)
    image = client.get(f"/search/upload/{upload}.jpg")
    assert image.status_code == 200 and image.headers["cache-control"] == "no-store"
    # the same upload, searched again in a box drawn around the face
    box = client.post(
        "/search",
        data={
            "csrf": csrf,
            "gallery": "default",
            "upload_id": upload,
            "x1": "60",
            "y1": "40",
            "x2": "340",
            "y2": "360",
        },
    )
    assert box.status_code == 200 and "Searched only the face in the drawn box" in box.text
    empty = client.post(
        "/search",
        data={"csrf": csrf, "gallery": "default", "upload_id": upload, "x1": "0", "y1": "440", "x2": "30", "y2": "499"},
    )
    assert empty.status_code == 400 and "no face found in this box" in empty.text
    client.cookies.clear()
    _user(client, "admin")
    audit = client.get("/audit?action=search").text
    assert audit.count("<td>search</td>") == 2  # the search with no face in the box raised before it was made


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"%PDF-1.7 not an image", "not a JPEG, PNG or WebP image"),
        (b"", "the file is empty"),
        (_png_header(60_000, 60_000) + b"\x00" * 100, "more than the 40 allowed (refused before decoding)"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "JPEG header is truncated or damaged"),
        (b"GIF89a" + b"\x10\x00\x10\x00" + b"\x00" * 32, "not a JPEG, PNG or WebP image"),
    ],
)
def test_hostile_uploads_get_one_clear_message(client, data, message):
    csrf = _user(client, "rita")
    r = _search(client, csrf, data, "evil.jpg")
    assert r.status_code == 400
    assert message in r.text
    assert "Traceback" not in r.text


def test_an_upload_over_the_size_limit_is_refused_before_decoding(console_env):
    from lookout.console.app import Services

    services = Services.open(console_env.config(**{"uploads.max_bytes": 10_000}), start_fleet=False)
    try:
        with TestClient(create_app(services), base_url="http://127.0.0.1") as c:
            csrf = _user(c, "rita")
            r = _search(c, csrf, _jpeg(console_env.grace))
            assert r.status_code in (400, 413)
            assert "the limit is 10,000" in r.text
            assert c.get("/review").status_code == 200  # the session lives on
    finally:
        services.close()


def test_no_search_where_the_policy_denies_recognition_and_the_refusal_is_audited(console_env):
    from lookout.console.app import Services

    services = Services.open(console_env.config(location="US-IL"), start_fleet=False)
    try:
        with TestClient(create_app(services), base_url="http://127.0.0.1") as c:
            csrf = _user(c, "rita")
            r = _search(c, csrf, _jpeg(console_env.grace))
            assert r.status_code == 400
            assert "not allowed where this console is" in r.text and "Grace Hopper" not in r.text
            denied = services.audit.entries(
                __import__("lookout.console.audit", fromlist=["AuditFilter"]).AuditFilter(action="search.denied")
            )
            assert len(denied) == 1 and denied[0].actor == "rita"
    finally:
        services.close()


@pytest.mark.parametrize("taken_in", ["US-IL", "illinois", "US-MO/IL", "Atlantis"])
def test_no_search_of_a_photo_taken_where_recognition_is_denied(console_env, taken_in):
    """Attack A40: the face in the photo is someone where it was taken, whoever searches it and from where."""
    from lookout.console.app import Services
    from lookout.console.audit import AuditFilter

    services = Services.open(console_env.config(), start_fleet=False)
    try:
        with TestClient(create_app(services), base_url="http://127.0.0.1") as c:
            csrf = _user(c, "rita")
            r = _search(c, csrf, _jpeg(console_env.grace), taken_in=taken_in)
            assert r.status_code == 400
            assert "not allowed where the photo was taken" in r.text and "Grace Hopper" not in r.text
            denied = services.audit.entries(AuditFilter(action="search.denied"))
            assert len(denied) == 1 and denied[0].detail["taken_in"] == taken_in
    finally:
        services.close()


def test_a_console_without_a_location_asks_where_the_photo_was_taken(console_env):
    from lookout.console.app import Services

    services = Services.open(console_env.config(location=""), start_fleet=False)
    try:
        with TestClient(create_app(services), base_url="http://127.0.0.1") as c:
            csrf = _user(c, "rita")
            r = _search(c, csrf, _jpeg(console_env.grace))
            assert r.status_code == 400 and "say where the photo was taken" in r.text
            assert "Grace Hopper" not in r.text
            r = _search(c, csrf, _jpeg(console_env.grace), taken_in="US-CA")
            assert r.status_code == 200 and "Grace Hopper" in r.text
    finally:
        services.close()


def test_a_gallery_holding_a_denied_person_is_never_searched(console_env, pipeline, tmp_path):
    """A bundle whose own policy allowed Illinois (signed that way) is refused under the console's default policy."""
    from lookout.console.app import Services
    from lookout.console.audit import AuditFilter
    from lookout.sync.publish import publish
    from lookout.sync.sources.folders import read_folders
    from tests.helpers import hostile_bundle

    people = tmp_path / "il"
    (people / "grace_hopper").mkdir(parents=True)
    cv2.imwrite(str(people / "grace_hopper" / "1.jpg"), console_env.grace)
    (people / "grace_hopper" / "person.json").write_text('{"name": "Grace Hopper", "jurisdiction": "US-IL"}')
    hostile_bundle(
        list(read_folders(people)),
        tmp_path / "b",
        console_env.root / "keys" / "bundle-signing.key.pem",
        pipeline,
        {"version": "allow-all"},
    )
    publish(tmp_path / "b", console_env.published.parent / "published-il")
    services = Services.open(
        console_env.config(
            **{
                "galleries.il.published": str(console_env.published.parent / "published-il"),
                "galleries.il.public_key": str(console_env.root / "keys" / "bundle-signing.pub.pem"),
            }
        ),
        start_fleet=False,
    )
    try:
        with TestClient(create_app(services), base_url="http://127.0.0.1") as c:
            csrf = _user(c, "rita")
            r = c.post(
                "/search",
                data={"csrf": csrf, "gallery": "il"},
                files={"photo": ("p.jpg", _jpeg(console_env.grace), "image/jpeg")},
            )
            assert r.status_code == 400 and "cannot be used" in r.text and "US-IL" in r.text
            assert "Grace Hopper" not in r.text
            assert services.audit.count(AuditFilter(action="search.denied")) == 1
    finally:
        services.close()


def test_a_gallery_without_a_public_key_is_never_searched(console_env):
    """Attack A13: without the key the console cannot tell a signed bundle from an edited one: fail closed."""
    services = Services.open(
        console_env.config(**{"galleries.nokey.published": str(console_env.published)}), start_fleet=False
    )
    try:
        with TestClient(create_app(services), base_url="http://127.0.0.1") as c:
            csrf = _user(c, "rita")
            r = c.post(
                "/search",
                data={"csrf": csrf, "gallery": "nokey"},
                files={"photo": ("p.jpg", _jpeg(console_env.grace), "image/jpeg")},
            )
            assert r.status_code == 400 and "no public key" in r.text and "Grace Hopper" not in r.text
            assert services.audit.count(AuditFilter(action="search.denied")) == 1
    finally:
        services.close()


# -- galleries --------------------------------------------------------------------------------


def test_withdrawing_a_photo_makes_a_signed_published_version_without_it(client, console_env):
    csrf = _user(client, "gus")
    page = client.get("/galleries/default").text
    assert "Current version <strong>v1</strong>" in page and "grace_hopper/2.jpg" in page
    r = client.post(
        "/galleries/default/withdraw",
        data={"csrf": csrf, "photo_id": "grace_hopper/2.jpg", "reason": "consent withdrawn by email"},
        follow_redirects=True,
    )
    assert r.status_code == 200
    assert "version 2 signed and published" in r.text
    assert "Current version <strong>v2</strong>" in r.text
    report = r.text.split('id="report"')[1].split("</details>")[0]
    assert "grace_hopper/2.jpg" in report and "withdrawn" in report  # the report says what left and why
    v2 = console_env.published / "v" / "2"
    assert (v2 / "delta" / "delta.json").is_file()
    conn = metadata.connect_readonly(v2 / "gallery.sqlite")
    photos = {p["photo_id"] for p in metadata.photos(conn)}
    conn.close()
    assert photos == {"grace_hopper/1.jpg", "eileen_collins/1.png"}
    assert '"version": 2' in (console_env.published / "manifest.json").read_text()
    # the withdrawal holds at the next change, though the source still has the photo
    r = client.post(
        "/galleries/default/remove",
        data={"csrf": csrf, "person_id": "eileen_collins", "reason": "case closed"},
        follow_redirects=True,
    )
    assert "version 3 signed and published" in r.text
    conn = metadata.connect_readonly(console_env.published / "v" / "3" / "gallery.sqlite")
    assert {p["photo_id"] for p in metadata.photos(conn)} == {"grace_hopper/1.jpg"}
    conn.close()
    withdrawn = r.text.split('id="withdrawn"')[1].split("</details>")[0]
    assert "grace_hopper/2.jpg" in withdrawn and "eileen_collins" in withdrawn  # the bundle's ledger
    # consent given again: reinstated, enrolled again in version 4
    r = client.post(
        "/galleries/default/reinstate",
        data={"csrf": csrf, "item": "grace_hopper/2.jpg", "reason": "consent given again in writing"},
        follow_redirects=True,
    )
    assert "version 4 signed and published" in r.text
    conn = metadata.connect_readonly(console_env.published / "v" / "4" / "gallery.sqlite")
    assert {p["photo_id"] for p in metadata.photos(conn)} == {"grace_hopper/1.jpg", "grace_hopper/2.jpg"}
    conn.close()
    client.cookies.clear()
    _user(client, "admin")
    audit = client.get("/audit?action=gallery").text
    assert "gallery.reinstate" in audit and "consent given again in writing" in audit
    assert (
        "gallery.withdraw_photo" in audit and "consent withdrawn by email" in audit and "gallery.remove_person" in audit
    )


def test_the_gallery_page_shows_the_failure_to_enrol_report(client, console_env):
    _user(client, "gus")
    page = client.get("/galleries/default").text
    assert "Failure-to-enrol report" in page
    assert "enrolled 3 of 3 photos" in page


def test_photos_are_served_only_from_the_gallery_photo_folders(client, console_env):
    _user(client, "rita")
    assert client.get("/galleries/default/photo.jpg?id=../../etc/passwd").status_code == 404
    assert client.get("/galleries/nope/photo.jpg?id=grace_hopper/1.jpg").status_code == 404


# -- audit --------------------------------------------------------------------------------------


def test_audit_filters_exports_csv_and_cannot_be_rewritten(client, console_env, services):
    alert_id = console_env.alert("grace_hopper")
    csrf = _user(client, "rita")
    client.post(f"/review/{alert_id}/reject", data={"csrf": csrf, "reason": "=HYPERLINK(evil)"})
    client.cookies.clear()
    _user(client, "admin")
    assert "<td>review.reject</td>" in client.get("/audit?actor=rita").text
    assert "<td>review.reject</td>" not in client.get("/audit?actor=nobody").text
    csv_text = client.get("/audit.csv?actor=rita")
    assert csv_text.headers["content-disposition"].startswith("attachment")
    lines = csv_text.text.splitlines()
    assert lines[0] == "id,at_utc,actor,action,target,reason,detail"
    assert any("review.reject" in line and "'=HYPERLINK(evil)" in line for line in lines[1:])
    db = sqlite3.connect(console_env.relay_store)  # the relay store's audit table, shared with `lookout review`
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET actor='someone else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit")
    db.close()


# -- accounts ---------------------------------------------------------------------------------


def test_admin_creates_an_account_that_can_log_in(client):
    _user(client, "admin")
    csrf = _csrf(client.get("/accounts").text)
    r = client.post(
        "/accounts/create",
        data={"csrf": csrf, "username": "nina", "role": "reviewer", "password": "short"},
        follow_redirects=True,
    )
    assert "at least 12 characters" in r.text
    r = client.post(
        "/accounts/create",
        data={"csrf": csrf, "username": "nina", "role": "reviewer", "password": "a long enough one"},
        follow_redirects=True,
    )
    assert "User nina (reviewer) created" in r.text
    client.cookies.clear()
    assert login(client, "nina", "a long enough one").status_code == 303


def test_adduser_command_reads_the_password_from_the_environment(console_env, monkeypatch, capsys):
    from lookout.cli import main

    monkeypatch.setenv("NEW_PASSWORD", "another long password")
    code = main(
        [
            "console",
            "adduser",
            "olga",
            "--role",
            "admin",
            "--config",
            str(console_env.config_path),
            "--password-env",
            "NEW_PASSWORD",
        ]
    )
    assert code == 0
    assert "olga (admin)" in capsys.readouterr().out
    assert "another long password" not in console_env.config().database.read_bytes().decode("latin-1")


def test_withdrawn_photo_is_no_longer_served(client, console_env):
    csrf = _user(client, "gus")
    assert client.get("/galleries/default/photo.jpg?id=grace_hopper/2.jpg").status_code == 200  # cached now
    client.post("/galleries/default/withdraw", data={"csrf": csrf, "photo_id": "grace_hopper/2.jpg", "reason": "r"})
    assert client.get("/galleries/default/photo.jpg?id=grace_hopper/2.jpg").status_code == 404


def test_the_console_serves_tls_with_a_secure_cookie(console_env, tmp_path):
    """TLS where configured: a real uvicorn with a certificate; the session cookie gets the Secure flag."""
    import datetime
    import ipaddress

    import httpx2 as httpx
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from lookout.console.server import ConsoleServer

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    config = console_env.config(**{"tls.cert_file": str(tmp_path / "c.pem"), "tls.key_file": str(tmp_path / "k.pem")})
    server = ConsoleServer(config).start()
    try:
        assert server.wait_started() and server.url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
        with httpx.Client(base_url=server.url, verify=trust) as c:
            page = c.get("/login")
            assert page.status_code == 200 and "strict-transport-security" in page.headers
            r = c.post("/login", data={"username": "rita", "password": PASSWORD, "csrf": _csrf(page.text)})
            assert r.status_code == 303
            assert "secure" in r.headers["set-cookie"].lower()
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url.replace("https://", "http://") + "/login", timeout=5)
    finally:
        server.stop()


def test_messages_are_never_taken_from_the_url(client, console_env):
    """A crafted link cannot put words on a reviewer's page; a message after a change is shown once."""
    alert_id = console_env.alert("grace_hopper")
    csrf = _user(client, "rita")
    assert "Call this number" not in client.get(f"/review/{alert_id}?notice=Call+this+number").text
    page = client.post(f"/review/{alert_id}/confirm", data={"csrf": csrf}, follow_redirects=True).text
    assert f"Alert {alert_id} confirmed" in page
    assert f"Alert {alert_id} confirmed" not in client.get("/review").text  # once


def test_a_user_changes_their_own_password_and_other_sessions_end(console_env, services):
    app = create_app(services)
    with TestClient(app, base_url="http://127.0.0.1") as one, TestClient(app, base_url="http://127.0.0.1") as two:
        _user(one, "rita")
        _user(two, "rita")
        csrf = _csrf(one.get("/account").text)
        wrong = one.post("/account", data={"csrf": csrf, "current": "nope", "new": "x" * 12, "again": "x" * 12})
        assert "current password: is not right" in wrong.text
        r = one.post(
            "/account",
            data={"csrf": csrf, "current": PASSWORD, "new": "a brand new secret", "again": "a brand new secret"},
        )
        assert "Password changed" in r.text
        assert one.get("/review", follow_redirects=False).status_code == 200  # this session goes on
        assert two.get("/review", follow_redirects=False).status_code == 303  # the other one ended
        one.cookies.clear()
        assert login(one, "rita").status_code == 401
        assert login(one, "rita", "a brand new secret").status_code == 303


def test_the_gallery_page_finds_people_by_name_and_pages_them(client):
    _user(client, "gus")
    page = client.get("/galleries/default?q=eileen").text
    people = page.split("People (")[1]
    assert people.startswith("1 matching") and "Eileen Collins" in people and "Grace Hopper" not in people
    assert client.get("/galleries/default?page=not-a-number").status_code == 200
    assert "Grace Hopper" not in client.get("/galleries/default?page=2").text.split("People (")[1]


def test_the_link_in_a_text_opens_the_alert_after_logging_in(client, console_env):
    """The relay's texts link to <console_url>/alerts/<id>; a reviewer lands on that alert, never elsewhere."""
    alert_id = console_env.alert("grace_hopper")
    r = client.get(f"/alerts/{alert_id}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/login?next=%2Freview%2F{alert_id}"
    page = client.get(r.headers["location"])
    r = client.post(
        "/login",
        data={"username": "rita", "password": PASSWORD, "csrf": _csrf(page.text), "next": f"/review/{alert_id}"},
        follow_redirects=False,
    )
    assert r.headers["location"] == f"/review/{alert_id}"
    assert client.get(f"/alerts/{alert_id}", follow_redirects=False).headers["location"] == f"/review/{alert_id}"
    client.cookies.clear()
    page = client.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in page.text
    for bad in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        page = client.get("/login")
        r = client.post(
            "/login",
            data={"username": "rita", "password": PASSWORD, "csrf": _csrf(page.text), "next": bad},
            follow_redirects=False,
        )
        assert r.headers["location"] == "/", bad
        client.cookies.clear()


@pytest.mark.postgres
def test_review_through_a_postgresql_relay_store(console_env, pg_store_settings):
    """A fleet's relays share PostgreSQL: the console opens it from the relay's config and decides through it."""
    import yaml

    from lookout.console.app import Services
    from lookout.relay.store import open_store

    relay_yaml = console_env.root / "relay-pg.yaml"
    relay_yaml.write_text(yaml.safe_dump({"store": pg_store_settings.model_dump(mode="json", exclude_none=True)}))
    alert_id = console_env.ingest("grace_hopper", store_settings=pg_store_settings).alert_id
    services = Services.open(console_env.config(relay_config=str(relay_yaml)), start_fleet=False)
    try:
        with TestClient(create_app(services), base_url="http://127.0.0.1") as c:
            csrf = _user(c, "rita")
            assert "Grace Hopper" in c.get(f"/review/{alert_id}").text
            c.post(f"/review/{alert_id}/confirm", data={"csrf": csrf, "note": "checked"})
            c.cookies.clear()
            _user(c, "admin")
            assert "<td>review.confirm</td>" in c.get("/audit?actor=rita").text
    finally:
        services.close()
    store = open_store(pg_store_settings)
    try:
        assert store.get_alert(alert_id).status == "confirmed"
    finally:
        store.close()


def test_searches_per_account_are_limited_and_the_refusal_is_audited(console_env):
    from lookout.console.app import Services
    from lookout.console.audit import AuditFilter

    services = Services.open(console_env.config(**{"search.per_user_per_hour": "2"}), start_fleet=False)
    try:
        with TestClient(create_app(services), base_url="http://127.0.0.1") as c:
            csrf = _user(c, "rita")
            photo = _jpeg(cv2.resize(console_env.grace, (400, 500)))
            assert _search(c, csrf, photo).status_code == 200
            assert _search(c, csrf, photo).status_code == 200
            third = _search(c, csrf, photo)
            assert third.status_code == 400 and "2 searches in the last hour" in third.text
            assert "Grace Hopper" not in third.text
        assert services.audit.count(AuditFilter(action="search.denied")) == 1
        assert services.audit.count(AuditFilter(action="search", actor="rita")) == 3  # prefix: the refusal too
    finally:
        services.close()


@pytest.mark.broker
def test_the_fleet_page_says_when_its_watcher_stopped(console_env, mosquitto):
    """A12: a fleet watcher whose network thread ended must not show the last states it saw as live."""
    config = console_env.config(**{"fleet.enabled": "true", "mqtt.port": str(mosquitto.port)})
    services = Services.open(config)
    try:
        watcher = services.fleet
        assert watcher is not None and watcher.connected.wait(15)
        status = {"schema_version": "1", "device_id": "cam-1", "state": "online", "at": "2030-01-01T00:00:00Z"}
        publish(mosquitto.port, "dt/lookout/cam-1/status", [json.dumps(status).encode()])
        wait_for(lambda: watcher.devices.get("cam-1") is not None, timeout=15, what="cam-1's status")
        with TestClient(create_app(services), base_url="http://127.0.0.1") as c:
            _user(c, "admin")
            live = c.get("/fleet").text
            assert 'id="watcher-stopped"' not in live and 'data-state="online"' in live

            def bug(client, userdata, message):
                raise RuntimeError("a bug nobody has written yet")

            watcher.client.on_message = bug
            publish(mosquitto.port, "dt/lookout/cam-1/heartbeat", [b"{}"])
            wait_for(lambda: watcher.stopped is not None, timeout=15, what="the watcher's stop")
            page = c.get("/fleet").text
        assert 'id="watcher-stopped"' in page and "a bug nobody has written yet" in page
        assert 'data-state="unknown"' in page and 'data-state="online"' not in page and ">connected<" not in page
    finally:
        services.close()
