"""HTTP JSON API source against a real server on 127.0.0.1: missing ids, a 500 that succeeds on
retry, a broken photo URL, resume after interruption; CSV/JSON manifests; the policy file."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest

from lookout.errors import ConfigError, InputError
from lookout.gallery.keys import generate_keys
from lookout.gallery.policy import Policy
from lookout.sync.build import build_gallery
from lookout.sync.sources.csv_json import read_manifest_file
from lookout.sync.sources.http_api import HttpApiSource


class FixtureApi:
    """Cases 1..6 with 3 missing (404) and 4 failing once with 500; photos under /img/."""

    def __init__(self, photos: dict[str, bytes]) -> None:
        self.photos = photos
        self.requests: list[str] = []
        self.fail_once = {"/cases/4"}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                api.requests.append(self.path)
                if self.path in api.fail_once:
                    api.fail_once.discard(self.path)
                    return self._send(500, b"boom", "text/plain")
                if self.path.startswith("/cases/"):
                    doc = api.case(int(self.path.rsplit("/", 1)[1]))
                    if doc is None:
                        return self._send(404, b"{}", "application/json")
                    return self._send(200, json.dumps(doc).encode(), "application/json")
                name = self.path.removeprefix("/img/")
                if name in api.photos:
                    return self._send(200, api.photos[name], "image/jpeg")
                return self._send(404, b"no", "text/plain")

            def _send(self, code, body, ctype):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def case(self, i: int) -> dict | None:
        cases = {
            1: {
                "caseId": 1,
                "subject": {"first": "Grace", "last": "Hopper", "age": 79},
                "state": "NY",
                "images": [{"href": f"{self.url}/img/grace.jpg"}],
            },
            2: {
                "caseId": 2,
                "subject": {"first": "Eileen", "last": "Collins"},
                "state": "TX",
                "images": [{"href": f"{self.url}/img/eileen.jpg"}, {"href": f"{self.url}/img/missing.jpg"}],
            },
            4: {
                "caseId": 4,
                "subject": {"first": "Ill", "last": "Noise"},
                "state": "IL",
                "images": [{"href": f"{self.url}/img/grace.jpg"}],
            },
            5: {
                "caseId": 5,
                "subject": {"first": "No", "last": "Face"},
                "state": "CA",
                "images": [{"href": f"{self.url}/img/cat.jpg"}],
            },
            6: {
                "caseId": 6,
                "subject": {"first": "Opted", "last": "Out"},
                "state": "CA",
                "images": [{"href": f"{self.url}/img/eileen.jpg", "consent": False}],
            },
        }
        return cases.get(i)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(grace_hopper, astronaut, faceless_images):
    photos = {
        name: cv2.imencode(".jpg", img)[1].tobytes()
        for name, img in (
            ("grace.jpg", grace_hopper),
            ("eileen.jpg", astronaut),
            ("cat.jpg", faceless_images["chelsea (cat)"]),
        )
    }
    server = FixtureApi(photos)
    yield server
    server.close()


def _source(api: FixtureApi, state: Path) -> HttpApiSource:
    return HttpApiSource.from_config(
        None,
        url_template=api.url + "/cases/{id}",
        state_dir=state,
        max_misses=3,
        min_interval_s=0.0,
        retries=2,
        backoff_s=0.01,
        timeout_s=5,
        person_id_prefix="case-",
        jurisdiction_prefix="US-",
        fields={
            "person_id": "caseId",
            "name": ["subject.first", "subject.last"],
            "jurisdiction": "state",
            "photos": "images",
            "photo_url": "href",
            "use_for_recognition": "consent",
            "attributes": {"age": "subject.age"},
        },
    )


def test_http_source_walk_retry_missing_and_resume(api, tmp_path):
    first = _source(api, tmp_path)
    list(first.records(limit=2))  # interrupted after ids 1 and 2
    assert api.requests == ["/cases/1", "/cases/2"]
    records = list(_source(api, tmp_path).records())  # resumes at 3
    case_requests = [r for r in api.requests if r.startswith("/cases/")]
    assert case_requests.count("/cases/1") == 1 and case_requests.count("/cases/2") == 1  # not fetched again
    assert case_requests.count("/cases/4") == 2  # a 500, then success on retry
    assert case_requests[-3:] == ["/cases/7", "/cases/8", "/cases/9"]  # stops after 3 consecutive misses
    by_person = {}
    for r in records:
        by_person.setdefault(r.person_id, []).append(r)
    assert set(by_person) == {"case-1", "case-2", "case-4", "case-5", "case-6"}  # id 3 is missing
    assert by_person["case-1"][0].name == "Grace Hopper" and by_person["case-1"][0].attributes["age"] == 79
    assert by_person["case-4"][0].jurisdiction == "US-IL"
    assert by_person["case-6"][0].use_for_recognition is False
    # the walk finished: a later run reads every record again (consent and jurisdiction never come from a cache)
    api.requests.clear()
    list(_source(api, tmp_path).records())
    assert api.requests == [f"/cases/{i}" for i in range(1, 10)]


def test_http_source_enrolment_report(api, tmp_path, pipeline):
    priv, _pub = generate_keys(tmp_path / "keys")
    records = list(_source(api, tmp_path / "work").records())
    report = build_gallery(
        records,
        tmp_path / "g",
        priv,
        pipeline,
        Policy.default(),
        work_dir=tmp_path / "work",
        progress=False,
        report_path=tmp_path / "report.csv",
    )
    reasons = {(r.person_id, r.source.rsplit("/", 1)[-1]): (r.status, r.reason) for r in report.results}
    assert reasons["case-1", "grace.jpg"] == ("enrolled", None)
    assert reasons["case-2", "eileen.jpg"] == ("enrolled", None)
    assert reasons["case-2", "missing.jpg"] == ("failed", "download_failed")  # broken photo URL
    assert reasons["case-4", "grace.jpg"] == ("excluded", "policy_excluded")  # US-IL
    assert reasons["case-5", "cat.jpg"] == ("failed", "no_face")
    assert reasons["case-6", "eileen.jpg"] == ("excluded", "not_for_recognition")
    assert report.embedded == 2
    assert report.manifest.counts == {"persons": 2, "photos": 2}
    assert "download_failed" in (tmp_path / "report.csv").read_text()
    # resume: nothing is embedded again, the broken URL is retried
    again = build_gallery(
        records, tmp_path / "g2", priv, pipeline, Policy.default(), work_dir=tmp_path / "work", progress=False
    )
    assert again.embedded == 0 and again.manifest.counts == {"persons": 2, "photos": 2}
    assert api.requests.count("/img/missing.jpg") >= 2


def test_manifest_csv_and_json(tmp_path):
    (tmp_path / "m.csv").write_text(
        "person_id,name,photo,jurisdiction,use_for_recognition,age,case_url\n"
        "p1,Ann,a.jpg,US-CA,true,34,https://x/1\np1,Ann,b.jpg,US-CA,no,,\n"
    )
    recs = read_manifest_file(tmp_path / "m.csv")
    assert recs[0].photo == str(tmp_path / "a.jpg") and recs[0].attributes == {"age": "34", "case_url": "https://x/1"}
    assert recs[1].use_for_recognition is False
    (tmp_path / "m.json").write_text(
        json.dumps(
            {
                "photos": [
                    {
                        "person_id": "p2",
                        "name": "Bo",
                        "photo": "https://h/x.jpg",
                        "box": [1, 2, 30, 40],
                        "attributes": {"sex": "M"},
                    }
                ]
            }
        )
    )
    (rec,) = read_manifest_file(tmp_path / "m.json")
    assert rec.box == (1, 2, 30, 40) and rec.attributes == {"sex": "M"} and rec.photo == "https://h/x.jpg"
    (tmp_path / "bad.csv").write_text("person_id,name,photo\np1,,a.jpg\n")
    with pytest.raises(InputError, match=r"bad\.csv:2: missing name"):
        read_manifest_file(tmp_path / "bad.csv")


def test_policy_rules(tmp_path):
    default = Policy.default()
    assert not default.allows("US-IL") and not default.allows("us-il-cook") and default.allows("US-CA")
    assert not default.allows(None) and "BIPA" in default.decide("US-IL").reason  # unknown: denied (fail closed)
    (tmp_path / "p.yaml").write_text(
        "version: '2025-03'\ndefault: deny\nrules:\n"
        "  - {jurisdiction: US-TX, decision: deny, purposes: [commercial]}\n"
        "  - {jurisdiction: US, decision: allow}\n"
    )
    policy = Policy.load(tmp_path / "p.yaml")
    assert policy.version == "2025-03"
    assert policy.allows("US-TX", "missing_persons") and not policy.allows("US-TX", "commercial")
    assert not policy.allows("FR") and policy.allows("US-NY")
    assert policy.crops_allowed("US-NY") and default.crops_allowed("GB")
    (tmp_path / "c.yaml").write_text(
        "version: c\ncrops: false\nrules:\n  - {jurisdiction: DE, decision: allow, crops: true}\n"
        "  - {jurisdiction: FR, decision: allow}\n"
    )
    crops = Policy.load(tmp_path / "c.yaml")
    assert crops.crops_allowed("DE") and not crops.crops_allowed("FR") and not crops.crops_allowed("GB")
    (tmp_path / "bad.yaml").write_text("version: 1\nrules: [{jurisdiction: X, decision: maybe}]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        Policy.load(tmp_path / "bad.yaml")
