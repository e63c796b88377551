"""No jurisdiction, no recognition: a missing jurisdiction is an unknown one, and unknown is denied.

The brief: "Fail closed where people's rights are at stake: an unknown jurisdiction is denied". A record
with no jurisdiction could be about someone in Illinois, a device with no location could be in Illinois:
BIPA says never, even by accident.

- Gallery build/update: a record's jurisdiction is its own, else the source-wide default the operator
  declares (``--jurisdiction``, an API source's ``jurisdiction:``), else it is refused (``policy_excluded``,
  with a detail saying how to fix it) before its photo is read, let alone embedded. When nothing is
  enrolled for that reason, the build's first line says so.
- Device: recognition needs ``location.jurisdiction``; ``lookout run`` and ``--check-config`` refuse
  without it, in one line saying what to set; so does the Greengrass launcher.
- A bundle holding a person with no jurisdiction (built under ``unknown_jurisdiction: allow``, or by an
  older build): a device, ``sync pull`` and ``lookout search`` with no policy file refuse it as a whole
  (the built-in policy denies unknown people even if the bundle's own allowed them), so that person is
  never named. A device policy file that says ``unknown_jurisdiction: allow`` is an operator's choice.
Real models, the real CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lookout.cli import main
from lookout.device.check import check_config
from lookout.device.config import load_config
from lookout.errors import ConfigError
from lookout.face.pipeline import FacePipeline
from lookout.gallery.format import BundleError
from lookout.gallery.keys import generate_keys
from lookout.gallery.policy import Policy
from lookout.gallery.reader import load_bundle
from lookout.sync import enrol
from lookout.sync.build import build_gallery, update_gallery
from lookout.sync.records import PhotoRecord
from lookout.sync.sources import open_source
from lookout.sync.sources.http_api import HttpApiSource
from tests.helpers import PROJECT_ROOT

ALLOW_UNKNOWN = {"version": "allow-unknown", "unknown_jurisdiction": "allow", "rules": []}
# What `Policy.default()` was before the built-in policy denied people with no jurisdiction (older bundles carry it).
OLD_BUILTIN = {
    "version": "default-1",
    "default": "allow",
    "unknown_jurisdiction": "allow",
    "rules": [{"jurisdiction": "US-IL", "decision": "deny", "reason": "BIPA"}],
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def people(tmp_path_factory, grace_hopper, astronaut) -> Path:
    """Identity folders with no jurisdiction anywhere: grace/grace.jpg, eileen/eileen.jpg."""
    root = tmp_path_factory.mktemp("people")
    for person, image in (("grace", grace_hopper), ("eileen", astronaut)):
        (root / person).mkdir()
        cv2.imwrite(str(root / person / f"{person}.jpg"), image)
    return root


@pytest.fixture
def work_counted(monkeypatch) -> dict[str, int]:
    """How many photos were read and how many faces embedded, whoever builds (library or CLI)."""
    counts = {"read": 0, "embedded": 0}
    read, embed = enrol.read_image_file, FacePipeline.embed

    def counting_read(path, *args, **kwargs):
        counts["read"] += 1
        return read(path, *args, **kwargs)

    def counting_embed(self, chips):
        counts["embedded"] += len(chips)
        return embed(self, chips)

    monkeypatch.setattr(enrol, "read_image_file", counting_read)
    monkeypatch.setattr(FacePipeline, "embed", counting_embed)
    return counts


def _records(people: Path, **fields) -> list[PhotoRecord]:
    return [
        PhotoRecord(person_id=p.name, name=p.name.title(), photo=str(p / f"{p.name}.jpg"), **fields)
        for p in sorted(people.iterdir())
    ]


def _build_cli(people: Path, out: Path, key: Path, *extra: str) -> list[str]:
    return ["gallery", "build", str(people), "--out", str(out), "--key", str(key), "--device", "CPU",
            "--no-progress", *extra]  # fmt: skip


# -- gallery build ----------------------------------------------------------------------------------


def test_a_record_with_no_jurisdiction_is_refused_and_never_read_nor_embedded(
    people, keys, pipeline, tmp_path, work_counted
):
    report = build_gallery(_records(people), tmp_path / "b", keys[0], pipeline, progress=False)
    assert work_counted == {"read": 0, "embedded": 0} and report.embedded == 0
    assert report.manifest.counts == {"persons": 0, "photos": 0}
    assert [(r.status, r.reason) for r in report.results] == [("excluded", "policy_excluded")] * 2
    for r in report.results:
        assert r.detail.startswith("no jurisdiction:") and "--jurisdiction CODE" in r.detail, r.detail
        assert "unknown_jurisdiction: deny" in r.detail
    assert report.summary_line.startswith("NOTHING ENROLLED: every photo's record has no jurisdiction")


def test_cli_build_says_why_nothing_was_enrolled_in_its_first_line(people, keys, tmp_path, capsys, work_counted):
    code = main(_build_cli(people, tmp_path / "b", keys[0], "--report", str(tmp_path / "r.json")))
    out = capsys.readouterr().out.splitlines()
    assert code == 1 and work_counted["embedded"] == 0 and work_counted["read"] == 0
    assert out[0].startswith("NOTHING ENROLLED:") and "--jurisdiction CODE" in out[0], out
    assert sum("NOTHING ENROLLED" in line for line in out) == 1  # said once, up front
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["photos_no_jurisdiction"] == 2
    assert all("--jurisdiction CODE" in row["detail"] for row in report["photos"])
    assert main(["gallery", "report", str(tmp_path / "r.json")]) == 0
    assert capsys.readouterr().out.startswith("NOTHING ENROLLED")  # the report says it again


def test_cli_build_with_jurisdiction_enrols_and_records_it(people, keys, tmp_path, capsys, work_counted):
    assert main(_build_cli(people, tmp_path / "b", keys[0], "--jurisdiction", "California")) == 0
    out = capsys.readouterr().out
    assert "NOTHING ENROLLED" not in out and "2 people, 2 photos" in out
    assert work_counted == {"read": 2, "embedded": 2}
    gallery = load_bundle(tmp_path / "b", keys[1], None, None, location="US-CA")
    assert {gallery.person(p)["jurisdiction"] for p in ("grace", "eileen")} == {"US-CA"}  # normalised


def test_cli_build_with_an_illinois_default_is_refused(people, keys, tmp_path, capsys, work_counted):
    code = main(_build_cli(people, tmp_path / "b", keys[0], "--jurisdiction", "US IL"))
    out = capsys.readouterr().out
    assert code == 1 and work_counted == {"read": 0, "embedded": 0}
    assert "NOTHING ENROLLED" not in out and "policy_excluded 2" in out and "0 photos" in out


def test_an_unreadable_default_stops_the_build_before_the_source_is_read(people, keys, tmp_path, capsys):
    code = main(_build_cli(people, tmp_path / "b", keys[0], "--jurisdiction", "Atlantis"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--jurisdiction 'Atlantis'" in err[0] and "ISO 3166-2" in err[0]
    assert not (tmp_path / "b").exists()


def test_a_records_own_jurisdiction_wins_over_the_default(people, keys, pipeline, tmp_path):
    records = _records(people)
    records[1] = records[1].model_copy(update={"jurisdiction": "US-IL"})  # grace
    report = build_gallery(records, tmp_path / "b", keys[0], pipeline, progress=False, jurisdiction="US-CA")
    by_person = {r.person_id: (r.status, r.reason) for r in report.results}
    assert by_person == {"eileen": ("enrolled", None), "grace": ("excluded", "policy_excluded")}
    assert report.headline is None and "no jurisdiction" not in report.summary_line


def test_some_records_without_jurisdiction_are_counted_in_the_summary(people, keys, pipeline, tmp_path):
    records = _records(people)
    records[0] = records[0].model_copy(update={"jurisdiction": "US-NY"})  # eileen
    report = build_gallery(records, tmp_path / "b", keys[0], pipeline, progress=False)
    assert report.manifest.counts["persons"] == 1 and report.headline is None
    assert "1 photo excluded for having no jurisdiction (declare the source's with --jurisdiction CODE)" in (
        report.summary_line
    )


def test_an_api_source_declares_its_jurisdiction_in_its_config(tmp_path):
    config = tmp_path / "api.yaml"
    config.write_text("url_template: http://127.0.0.1:9/cases/{id}\njurisdiction: New York\n")
    source = HttpApiSource.from_config(config)
    assert source.config.jurisdiction == "US-NY"
    doc = {"id": 7, "name": "Ann", "photos": ["http://127.0.0.1:9/7.jpg"], "jurisdiction": ""}
    assert [r.jurisdiction for r in source.to_records(7, doc)] == ["US-NY"]
    assert [r.jurisdiction for r in source.to_records(8, {**doc, "jurisdiction": "TX"})] == ["US-TX"]
    with pytest.raises(ConfigError, match="declare the source's jurisdiction in one place"):
        open_source("http://127.0.0.1:9/cases/{id}", api_config=config, jurisdiction="US-CA")
    config.write_text("url_template: http://127.0.0.1:9/cases/{id}\njurisdiction: Atlantis\n")
    with pytest.raises(ConfigError, match="Atlantis"):
        HttpApiSource.from_config(config)


# -- gallery update ---------------------------------------------------------------------------------


def test_update_of_an_older_built_in_bundle_takes_people_with_no_jurisdiction_out(people, keys, pipeline, tmp_path):
    """A bundle built under the old built-in policy (unknown allowed) holds people with no jurisdiction;
    updating it without --policy applies today's built-in policy: they leave, with a reason that says why."""
    base = tmp_path / "v1"
    build_gallery(_records(people), base, keys[0], pipeline, Policy.from_dict(OLD_BUILTIN), progress=False)
    assert json.loads((base / "policy.json").read_text())["unknown_jurisdiction"] == "allow"
    v2 = update_gallery(base, _records(people), tmp_path / "v2", keys[0], pipeline, progress=False)
    assert v2.manifest.policy.version == Policy.default().version and v2.manifest.counts["persons"] == 0
    removed = [r for r in v2.results if r.status == "removed"]
    assert {r.person_id for r in removed} == {"grace", "eileen"} and {r.reason for r in removed} == {"policy_excluded"}
    assert all("--jurisdiction CODE" in r.detail for r in removed)
    v2b = update_gallery(
        base, _records(people), tmp_path / "v2b", keys[0], pipeline, progress=False, jurisdiction="US-CA"
    )
    assert v2b.manifest.counts["persons"] == 2 and v2b.embedded == 0  # nothing re-embedded: only the place changed
    assert load_bundle(tmp_path / "v2b", keys[1], None, None).person("grace")["jurisdiction"] == "US-CA"


# -- bundles holding people with no jurisdiction ----------------------------------------------------


@pytest.fixture(scope="module")
def unknown_bundle(tmp_path_factory, people, pipeline, keys) -> Path:
    """Built under a policy that allows unknown jurisdictions: Grace Hopper has none, Eileen is in US-NY."""
    out = tmp_path_factory.mktemp("unknown") / "bundle"
    records = _records(people)
    records[0] = records[0].model_copy(update={"jurisdiction": "US-NY"})  # eileen
    report = build_gallery(records, out, keys[0], pipeline, Policy.from_dict(ALLOW_UNKNOWN), progress=False)
    assert report.manifest.counts["persons"] == 2
    return out


def test_search_never_names_a_person_with_no_jurisdiction(unknown_bundle, people, keys, capsys):
    code = main(["search", "--jurisdiction", "US-CA", str(people / "grace" / "grace.jpg"), "--gallery", str(unknown_bundle), "--public-key",
                 str(keys[1]), "--device", "CPU"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2 and "Grace" not in out and "MATCH" not in out
    assert "no jurisdiction" in err and "unknown_jurisdiction: deny" in err


def test_a_device_without_a_policy_file_refuses_such_a_bundle(unknown_bundle, keys, tmp_path):
    with pytest.raises(BundleError, match="no jurisdiction"):
        load_bundle(unknown_bundle, keys[1], None, None)
    (tmp_path / "device.yaml").write_text(
        f"device_id: cam-1\nsource: {{url: {tmp_path}}}\nlocation: {{jurisdiction: US-NY}}\n"
        f"gallery: {{bundle_dir: {unknown_bundle}, public_key: {keys[1]}}}\n"
    )
    lines: list[str] = []
    assert check_config(load_config(tmp_path / "device.yaml", environ={}), out=lines.append) == 2
    assert any(line.startswith("FAIL  gallery") and "no jurisdiction" in line for line in lines), lines


def test_a_device_policy_file_may_allow_unknown_people_deliberately(unknown_bundle, keys, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(ALLOW_UNKNOWN))
    gallery = load_bundle(unknown_bundle, keys[1], None, Policy.load(policy), location="US-NY")
    assert gallery.person("grace")["jurisdiction"] is None and gallery.count_persons == 2
    (tmp_path / "deny.json").write_text(json.dumps({"version": "file-default", "rules": []}))
    with pytest.raises(BundleError, match="no jurisdiction"):  # a file that does not say "allow" denies
        load_bundle(unknown_bundle, keys[1], None, Policy.load(tmp_path / "deny.json"))


# -- the device -------------------------------------------------------------------------------------


def _device_yaml(tmp_path: Path, keys, location: str = "") -> Path:
    (tmp_path / "frames").mkdir(exist_ok=True)
    cv2.imwrite(str(tmp_path / "frames" / "0.png"), np.zeros((48, 64, 3), np.uint8))
    path = tmp_path / "device.yaml"
    path.write_text(
        f"device_id: cam-1\nsource: {{url: {tmp_path / 'frames'}}}\n{location}"
        f"gallery: {{bundle_dir: {tmp_path / 'no-bundle'}, public_key: {keys[1]}}}\n"
        f"outbox: {{path: {tmp_path / 'outbox.sqlite'}}}\n"
    )
    return path


def test_a_device_with_no_location_refuses_recognition_at_start(keys, tmp_path, capsys):
    code = main(["run", "--config", str(_device_yaml(tmp_path, keys))])
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if line.startswith("lookout:")]  # (log lines aside)
    assert code == 2 and len(problems) == 1 and "Traceback" not in err, err
    assert "location.jurisdiction is not set" in problems[0] and "location.jurisdiction: US-CA" in problems[0]
    assert "recognition.enabled: false" in problems[0]
    assert "model" not in err and "gallery" not in err  # refused before models or the gallery were opened


def test_check_config_fails_without_a_location_and_says_what_to_set(keys, tmp_path, capsys):
    code = main(["run", "--config", str(_device_yaml(tmp_path, keys)), "--check-config"])
    out = capsys.readouterr().out.splitlines()
    assert code == 2
    failed = [line for line in out if line.startswith("FAIL  jurisdiction")]
    assert len(failed) == 1 and "location.jurisdiction: US-CA" in failed[0], out
    assert main(["run", "--config", str(_device_yaml(tmp_path, keys)), "--check-config", "--set",
                 "recognition.enabled=false"]) == 0  # fmt: skip
    assert "ok    recognition: disabled: detection and tracking only" in capsys.readouterr().out.splitlines()


def test_an_unreadable_location_makes_the_config_invalid(keys, tmp_path, capsys):
    path = _device_yaml(tmp_path, keys, "location: {jurisdiction: Springfield}\n")
    assert main(["run", "--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "location.jurisdiction" in err and "ISO 3166-2" in err


@pytest.mark.slow  # a Python subprocess
def test_the_greengrass_launcher_refuses_an_empty_jurisdiction(tmp_path):
    config = tmp_path / "component.json"
    config.write_text(json.dumps({"jurisdiction": "", "source": str(tmp_path)}))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(PROJECT_ROOT),
        "LOOKOUT_PUBLISHER": "mqtt",
        "LOOKOUT_WORK_DIR": str(tmp_path / "work"),
        "LOOKOUT_DEVICE_ID": "cam-1",
        "LOOKOUT_JURISDICTION": "",
        "LOOKOUT_BUNDLE_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\\nnot checked here\\n-----END PUBLIC KEY-----",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "lookout.greengrass.launch", "--config-file", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    line = [text for text in proc.stderr.splitlines() if text.startswith("lookout:")]
    assert len(line) == 1 and "jurisdiction is empty" in line[0] and '"jurisdiction": "US-CA"' in line[0]
    assert not (tmp_path / "work" / "outbox.sqlite").exists()  # nothing started


# -- the policy itself ------------------------------------------------------------------------------


def test_the_built_in_policy_and_policy_files_deny_unknown_unless_they_say_allow():
    default = Policy.default().decide(None)
    assert not default.allowed and default.unknown and "unknown_jurisdiction: deny" in default.reason
    assert not Policy.from_dict({"version": "f"}).allows(None)
    assert Policy.from_dict(ALLOW_UNKNOWN).allows(None)
    assert Policy.from_dict(OLD_BUILTIN).superseded_builtin and not Policy.default().superseded_builtin
