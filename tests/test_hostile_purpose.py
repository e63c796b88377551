"""Attack A36: purposes were free text, so a spelling escaped a policy rule written for a purpose.

One closed vocabulary (lookout.gallery.purpose), read the same way by policy rules, ``gallery build
--purpose``, bundle manifests, device and console configs; an unknown purpose is refused where it is
configured and denied where it is asked about (fail closed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lookout.cli.main import main
from lookout.device.config import DeviceConfig
from lookout.errors import ConfigError, InputError
from lookout.gallery.policy import Policy
from lookout.gallery.purpose import PURPOSES, parse_purpose

TEXAS_COMMERCIAL_DENIED = {
    "version": "acme-tx-1",
    "default": "allow",
    "rules": [{"jurisdiction": "US-TX", "decision": "deny", "purposes": ["commercial"]}],
}


@pytest.mark.parametrize(
    "spelling",
    [
        "commercial",
        "Commercial",
        "COMMERCIAL",
        " commercial ",
        "ｃｏｍｍｅｒｃｉａｌ",
        "comm\u0435rcial",
        "comm\u200bercial",
    ],
)
def test_every_spelling_of_a_denied_purpose_is_denied(spelling: str) -> None:
    policy = Policy.from_dict(TEXAS_COMMERCIAL_DENIED, "tx-policy.yaml")
    decision = policy.decide("US-TX", spelling)
    assert not decision.allowed, decision.reason
    assert policy.decide("US-TX", "missing-persons").allowed  # the rule is about one purpose only


@pytest.mark.parametrize("unknown", ["comercial", "shopping", "", "commercial-use"])
def test_a_purpose_outside_the_vocabulary_is_denied_fail_closed(unknown: str) -> None:
    decision = Policy.default().decide("US-CA", unknown or " ")
    assert not decision.allowed
    assert "unknown purpose" in decision.reason and "fail closed" in decision.reason
    assert not Policy.default().crops_allowed("US-CA", "comercial")


def test_a_policy_rule_naming_an_unknown_purpose_is_refused_at_load() -> None:
    doc = {**TEXAS_COMMERCIAL_DENIED, "rules": [{**TEXAS_COMMERCIAL_DENIED["rules"][0], "purposes": ["comercial"]}]}
    with pytest.raises(ConfigError, match="unknown purpose 'comercial'"):
        Policy.from_dict(doc, "tx-policy.yaml")


def test_separators_and_case_are_one_spelling() -> None:
    assert parse_purpose("Missing_Persons") == "missing-persons"
    assert parse_purpose("law enforcement") == "law-enforcement"
    assert set(PURPOSES) == {parse_purpose(p.upper()) for p in PURPOSES}
    with pytest.raises(InputError, match="one of identification"):
        parse_purpose("x" * 5000)


def test_device_config_reads_a_purpose_or_refuses_it() -> None:
    base = {"device_id": "cam-1", "source": {"url": "frames"}, "recognition": {"enabled": False}}
    assert DeviceConfig.model_validate({**base, "purpose": "Missing Persons"}).purpose == "missing-persons"
    assert DeviceConfig.model_validate(base).purpose == "identification"
    with pytest.raises(ValidationError, match="unknown purpose 'shopping'"):
        DeviceConfig.model_validate({**base, "purpose": "shopping"})


def test_gallery_build_refuses_an_unknown_purpose_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    argv = ["gallery", "build", str(tmp_path / "people.csv"), "--out", str(tmp_path / "g"), "--key", "k.pem"]
    with pytest.raises(SystemExit) as ended:
        main([*argv, "--purpose", "comercial"])
    assert ended.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unknown purpose 'comercial'" in err[-1]
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("unsaid", ["identification", None, "Identification"])
def test_an_unsaid_purpose_is_denied_where_a_rule_denies_a_specific_one(unsaid: str | None) -> None:
    """Attack A43: the default purpose says nothing more, so it may be the denied one (fail closed)."""
    policy = Policy.from_dict(TEXAS_COMMERCIAL_DENIED, "tx-policy.yaml")
    decision = policy.decide("US-TX", unsaid)
    assert not decision.allowed and "name the purpose" in decision.reason
    assert policy.decide("US-TX", "research").allowed  # a named purpose the rule is not about
    assert policy.decide("US-CA", unsaid).allowed  # the rule is about Texas only
    allow_research = {
        **TEXAS_COMMERCIAL_DENIED,
        "rules": [{"jurisdiction": "US-CA", "decision": "allow", "purposes": ["research"]}],
    }
    assert Policy.from_dict({**allow_research, "default": "deny"}, "p").decide("US-CA", unsaid).allowed is False
