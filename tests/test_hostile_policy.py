"""The jurisdiction promise under attack (attack findings A3, A4, A8): never run face recognition on anyone
who may be in Illinois, whatever a policy file says and however the jurisdiction is written.

- A3: the built-in denial of US-IL is a floor. A policy file written for another purpose (a Texas-only rule)
  keeps it; a policy file that tries to allow US-IL is refused when loaded, in one line, before anything runs.
- A4: a jurisdiction is allowed only when every reading of it is allowed: ``US-MO/IL``, ``US-IN-IL`` may mean
  Illinois; a country-level ``US`` (or ``United States``) may be Illinois and is denied where the policy denies a
  US subdivision, for records and for devices alike.
- A8: an HTTP API's blank state (``" "``, ``"-"``, ``"."``) is no jurisdiction, never the prefix alone (``US-``).

Real models, the real CLI, faces-dev photos.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lookout.cli import main
from lookout.device.check import check_config
from lookout.device.config import load_config
from lookout.errors import ConfigError
from lookout.gallery.keys import generate_keys
from lookout.gallery.policy import Policy
from lookout.gallery.reader import load_bundle
from lookout.sync.sources.http_api import ApiConfig, HttpApiSource

TX_POLICY = (
    "version: acme-tx-1\ndefault: allow\nrules:\n  - {jurisdiction: US-TX, decision: deny, purposes: [commercial]}\n"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


def _people_csv(path: Path, faces_dev: Path, rows: list[tuple[str, str]]) -> Path:
    """One photo per person: (person_id, jurisdiction), the person's first faces-dev photo."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["person_id", "name", "photo", "jurisdiction"])
        for person, place in rows:
            out.writerow([person, person.title(), str(faces_dev / person / f"{person}1.png"), place])
    return path


def _report(path: Path) -> dict[str, dict]:
    return {row["person_id"]: row for row in json.loads(path.read_text())["photos"]}


# -- A3: the built-in denial is a floor ---------------------------------------------------------------


def test_a_policy_for_another_purpose_keeps_illinois_denied_at_build(faces_dev, keys, tmp_path, capsys):
    (tmp_path / "tx.yaml").write_text(TX_POLICY)
    people = _people_csv(
        tmp_path / "il.csv", faces_dev, [("amy", "Illinois"), ("bernadette", "US-IL"), ("howard", "US-CA")]
    )
    code = main(
        [
            "gallery",
            "build",
            str(people),
            "--policy",
            str(tmp_path / "tx.yaml"),
            "--out",
            str(tmp_path / "g"),
            "--key",
            str(keys[0]),
            "--report",
            str(tmp_path / "r.json"),
            "--device",
            "CPU",
        ]
    )
    assert code == 0, capsys.readouterr().err
    rows = _report(tmp_path / "r.json")
    for person in ("amy", "bernadette"):
        assert (rows[person]["status"], rows[person]["reason"]) == ("excluded", "policy_excluded")
        assert "built-in policy" in rows[person]["detail"] and "BIPA" in rows[person]["detail"]
    assert rows["howard"]["status"] == "enrolled"
    gallery = load_bundle(tmp_path / "g", keys[1], None, Policy.load(tmp_path / "tx.yaml"))
    assert gallery.count_persons == 1 and gallery.person("amy") is None


def test_the_texas_policy_denies_illinois_everywhere_it_is_used(tmp_path):
    (tmp_path / "tx.yaml").write_text(TX_POLICY)
    policy = Policy.load(tmp_path / "tx.yaml")
    for text in ("US-IL", "Illinois", "US-IL-COOK", "us il"):
        decision = policy.decide(text)
        assert not decision.allowed and "no policy file lifts" in decision.reason, text
    assert policy.allows("US-CA") and not policy.allows("US-TX", "commercial")
    assert policy.allows("US-TX", "missing-persons")
    assert not policy.allows("US-TX")  # the unsaid default purpose may be the denied one (A43)


@pytest.mark.parametrize(
    "rule",
    [
        {"jurisdiction": "US-IL", "decision": "allow", "reason": "we have written consent"},
        {"jurisdiction": "Illinois", "decision": "allow"},
        {"jurisdiction": "US-IL-COOK", "decision": "allow"},
        {"jurisdiction": "US-IL", "department": "Chicago PD", "decision": "allow"},
    ],
)
def test_a_policy_file_allowing_illinois_is_refused_when_loaded(tmp_path, rule):
    (tmp_path / "p.json").write_text(json.dumps({"version": "lift", "rules": [rule]}))
    with pytest.raises(ConfigError, match=r"built-in denial of US-IL is a floor no policy file can lift"):
        Policy.load(tmp_path / "p.json")


def test_the_cli_refuses_such_a_policy_in_one_line_before_anything_runs(faces_dev, keys, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("version: lift\nrules:\n  - {jurisdiction: US-IL, decision: allow}\n")
    people = _people_csv(tmp_path / "p.csv", faces_dev, [("amy", "US-IL")])
    code = main(
        [
            "gallery",
            "build",
            str(people),
            "--policy",
            str(tmp_path / "p.yaml"),
            "--out",
            str(tmp_path / "g"),
            "--key",
            str(keys[0]),
            "--device",
            "CPU",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no policy file can lift" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_a_device_with_a_permissive_policy_file_is_still_refused_in_illinois(tmp_path):
    (tmp_path / "allow.yaml").write_text("version: open\ndefault: allow\nunknown_jurisdiction: allow\n")
    (tmp_path / "device.yaml").write_text(
        DEVICE_BASE + f"gallery: {{bundle_dir: b, public_key: k.pem, policy: {tmp_path / 'allow.yaml'}}}\n"
    )
    cfg = load_config(tmp_path / "device.yaml", environ={}, overrides=["location.jurisdiction=US-IL"])
    lines: list[str] = []
    assert check_config(cfg, out=lines.append) == 2
    assert any(line.startswith("FAIL  jurisdiction") and "US-IL" in line for line in lines), lines


# -- A4: every reading must be allowed; a whole country may be Illinois -----------------------------


MAYBE_ILLINOIS = [
    "US-MO/IL",
    "US-MO, IL",
    "US-IN-IL",
    "US-CA-IL",
    "US-MO-Illinois",
    "US",
    "United States",
    "USA",
    "US-",
]


@pytest.mark.parametrize("text", MAYBE_ILLINOIS)
def test_jurisdictions_that_may_be_illinois_are_denied(text):
    decision = Policy.default().decide(text)
    assert not decision.allowed and "US-IL" in decision.reason, (text, decision.reason)


def test_every_reading_allowed_is_still_allowed():
    policy = Policy.default()
    for text in ("US-CA", "US-CA-LA", "US-NY-KINGS", "DE", "GB", "California"):
        assert policy.allows(text), text
    # a country with no denied subdivision stays allowed; one with a denied subdivision is refused
    berlin = Policy.from_dict({"version": "de", "rules": [{"jurisdiction": "DE-BY", "decision": "deny"}]})
    assert not berlin.allows("DE") and berlin.allows("DE-BE") and berlin.allows("FR")


def test_records_that_may_be_in_illinois_are_never_embedded(faces_dev, keys, tmp_path, capsys):
    rows = [
        ("amy", "US-MO/IL"),
        ("bernadette", "US-IN-IL"),
        ("howard", "US"),
        ("leonard", "United States"),
        ("penny", "US-CA"),
    ]
    people = _people_csv(tmp_path / "jur.csv", faces_dev, rows)
    code = main(
        [
            "gallery",
            "build",
            str(people),
            "--out",
            str(tmp_path / "g"),
            "--key",
            str(keys[0]),
            "--report",
            str(tmp_path / "r.json"),
            "--device",
            "CPU",
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = _report(tmp_path / "r.json")
    for person, _place in rows[:-1]:
        assert (report[person]["status"], report[person]["reason"]) == ("excluded", "policy_excluded"), person
    assert report["penny"]["status"] == "enrolled"


DEVICE_BASE = "device_id: cam-1\nsource: {url: video.mp4}\n"


@pytest.mark.parametrize("text", ["US-MO/IL", "US-CA-IL", "US", "United States"])
def test_a_device_somewhere_that_may_be_illinois_fails_check_config(tmp_path, text):
    (tmp_path / "device.yaml").write_text(DEVICE_BASE + "gallery: {bundle_dir: bundle, public_key: key.pem}\n")
    cfg = load_config(tmp_path / "device.yaml", environ={}, overrides=[f"location.jurisdiction={text}"])
    lines: list[str] = []
    assert check_config(cfg, out=lines.append) == 2
    (line,) = [line for line in lines if line.startswith("FAIL  jurisdiction")]
    assert "US-IL" in line, line


# -- A8: a blank state is no jurisdiction ---------------------------------------------------------


@pytest.mark.parametrize("state", [" ", ".", "-", "--", "", None])
def test_a_blank_api_state_is_no_jurisdiction_not_the_whole_country(state):
    fields = {"person_id": "id", "jurisdiction": "state", "photos": "images", "photo_url": "url"}
    bare = HttpApiSource(ApiConfig(url_template="http://127.0.0.1:1/c/{id}", jurisdiction_prefix="US-", fields=fields))
    (rec,) = bare.to_records(1, {"id": "x", "state": state, "images": [{"url": "/a.png"}]})
    assert rec.jurisdiction is None  # unknown: denied, and the build says how to fix it
    decision = Policy.default().decide(rec.jurisdiction)
    assert not decision.allowed and decision.unknown
    declared = HttpApiSource(
        ApiConfig(
            url_template="http://127.0.0.1:1/c/{id}", jurisdiction_prefix="US-", fields=fields, jurisdiction="US-CA"
        )
    )
    (rec,) = declared.to_records(1, {"id": "x", "state": state, "images": [{"url": "/a.png"}]})
    assert rec.jurisdiction == "US-CA"  # the source's declared default, as for a record that gives none
    (rec,) = declared.to_records(1, {"id": "x", "state": "IL", "images": [{"url": "/a.png"}]})
    assert rec.jurisdiction == "US-IL" and not Policy.default().allows(rec.jurisdiction)
