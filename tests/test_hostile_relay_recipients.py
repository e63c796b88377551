"""Attacks A42 and A52: a recipient's jurisdictions were compared as raw strings, so ``["California"]`` never matched the
stored ``US-CA`` and nobody was texted, with only a warning line. They are now read like every jurisdiction,
cover their subdivisions, and an alert nobody is told about is counted; unreadable, ambiguous or misspelt
routing stops the relay at load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lookout.relay.config import Recipient, RelayConfig
from lookout.relay.service import RelayService
from lookout.topics import Topics
from tests.relay_helpers import make_event, write_gallery


@pytest.mark.parametrize("spelling", ["California", "us-ca", "USA-CA", "US CA", "US"])
def test_recipient_jurisdictions_are_read_like_every_jurisdiction(spelling: str) -> None:
    desk = Recipient(name="desk", notifier="out", jurisdictions=[spelling])
    assert desk.wants("default", "US-CA")
    assert not desk.wants("default", "US-NY") or spelling == "US"
    assert not desk.wants("default", None)


def test_a_recipient_covers_the_subdivisions_of_its_jurisdiction() -> None:
    assert Recipient(name="desk", notifier="out", jurisdictions=["US-CA"]).wants("default", "US-CA-LA")
    assert Recipient(name="desk", notifier="out", jurisdictions=["US"]).wants("default", "US-TX")
    assert not Recipient(name="desk", notifier="out", jurisdictions=["US-CA"]).wants("default", "US")


@pytest.mark.parametrize(("value", "why"), [("Atlantis", "Atlantis"), ("US-MO/IL", "may mean")])
def test_unreadable_or_ambiguous_recipient_jurisdictions_stop_the_relay_at_load(value: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        Recipient(name="desk", notifier="out", jurisdictions=[value])


def test_a_recipient_naming_a_gallery_the_relay_does_not_have_is_refused(tmp_path) -> None:
    with pytest.raises(ValidationError, match="galleries 'missing' not under galleries"):
        RelayConfig(
            store={"path": tmp_path / "relay.sqlite"},
            notifiers={"out": {"type": "console"}},
            recipients=[{"name": "desk", "notifier": "out", "galleries": ["missing"]}],
        )


def test_alerts_reach_a_recipient_configured_by_name_and_nobody_told_is_counted(tmp_path) -> None:
    gallery = write_gallery(
        tmp_path / "gallery.sqlite",
        [
            {"person_id": "jane", "name": "Jane Doe", "jurisdiction": "US-CA"},
            {"person_id": "ann", "name": "Ann Roe", "jurisdiction": "US-NY"},
        ],
    )
    config = RelayConfig(
        store={"path": tmp_path / "relay.sqlite"},
        directory={"path": gallery},
        notifiers={"out": {"type": "console", "path": tmp_path / "sent.jsonl"}},
        recipients=[{"name": "desk", "notifier": "out", "jurisdictions": ["California"]}],
    )
    service = RelayService(config)
    try:
        for person in ("jane", "ann"):
            service.handle(Topics().match("cam-1"), make_event(device_id="cam-1", person_id=person).to_json())
        alerts = {a.person_id: a for a in service.intake_store.alerts(None, 10)}
        assert [d.recipient for d in service.intake_store.deliveries_of(alerts["jane"].id)] == ["desk"]
        assert service.intake_store.deliveries_of(alerts["ann"].id) == []
        assert service.counters.snapshot()["no_recipients"] == 1
        assert "lookout_relay_no_recipients_total 1" in service.counters.prometheus()
    finally:
        service.stop()


def test_the_relay_checks_a_gallery_for_the_purpose_its_bundle_was_built_for(tmp_path) -> None:
    """Attack A52: the relay asked the policy with its own purpose word, never the gallery's, so a rule scoped
    to the gallery's purpose (deny commercial use in Texas) was never asked."""
    gallery = write_gallery(tmp_path / "gallery.sqlite", [{"person_id": "tex", "name": "T", "jurisdiction": "US-TX"}])
    (tmp_path / "manifest.json").write_text('{"purpose": "Commercial"}')
    policy = tmp_path / "tx.yaml"
    policy.write_text("version: tx\nrules:\n  - {jurisdiction: US-TX, decision: deny, purposes: [commercial]}\n")
    for configured, refused in (("missing-persons", "was built for 'commercial'"), ("commercial", "US-TX deny")):
        config = RelayConfig(
            store={"path": tmp_path / f"{configured}.sqlite"},
            directory={"path": gallery},
            policy={"file": policy},
            galleries={"default": {"purpose": configured}},
        )
        service = RelayService(config)
        try:
            event = make_event(device_id="cam-1", person_id="tex")
            assert service.handle(Topics().match("cam-1"), event.to_json()) is None
            assert service.intake_store.alerts(None, 10) == []
            verdict = service.gate.check(None, "tex")
            assert not verdict.allowed and refused in verdict.reason
        finally:
            service.stop()
