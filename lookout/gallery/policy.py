"""Jurisdiction policy: where face recognition is allowed, per purpose.

A policy file (YAML or JSON) is an ordered list of rules; the first rule that
matches a (jurisdiction, purpose) pair decides, otherwise ``default`` does::

    version: "2025-01-01"
    default: allow            # for jurisdictions no rule matches
    unknown_jurisdiction: allow   # records / devices with no jurisdiction at all
    rules:
      - jurisdiction: US-IL   # matches US-IL and its subdivisions (US-IL-COOK)
        decision: deny
        reason: Illinois BIPA
      - jurisdiction: US-TX
        purposes: [commercial]  # only for these purposes; omitted = every purpose
        decision: deny
        reason: Texas CUBI
      - jurisdiction: DE
        decision: allow
        crops: false          # recognition allowed, but no face image leaves the device

``crops`` (per rule, or for the whole policy; default true) says whether a
device may attach a small JPEG of a matched face to its event.
Jurisdiction codes are ISO 3166-2 style (``US-IL``), compared case-insensitively;
a rule for ``US`` covers every ``US-*``, ``*`` covers everything.

The gallery builder never embeds a photo whose record is denied; the bundle
carries the policy it was built with; the device refuses a bundle holding a
person its own policy denies, and drops search results for such people.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lookout.config_file import read_mapping
from lookout.digest import sha256_bytes
from lookout.errors import ConfigError

ANY_PURPOSE = "*"
DEFAULT_PURPOSE = "identification"

# Jurisdictions where biometric identifiers may not be computed without written
# consent (the product never has it for a gallery): denied out of the box.
DEFAULT_DENY = (
    ("US-IL", "Illinois Biometric Information Privacy Act (BIPA): no biometric identifier without written consent"),
)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jurisdiction: str
    decision: Literal["allow", "deny"]
    purposes: list[str] | None = None  # None: every purpose
    reason: str = ""
    crops: bool | None = None  # may matched-face crops leave the device? None: the policy's ``crops``

    @field_validator("jurisdiction")
    @classmethod
    def _norm(cls, value: str) -> str:
        value = value.strip().upper()
        if not value:
            raise ValueError("empty jurisdiction")
        return value

    def matches(self, jurisdiction: str, purpose: str) -> bool:
        if self.purposes is not None and ANY_PURPOSE not in self.purposes and purpose not in self.purposes:
            return False
        return (
            self.jurisdiction == "*"
            or jurisdiction == self.jurisdiction
            or jurisdiction.startswith(self.jurisdiction + "-")
        )


class PolicyDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    default: Literal["allow", "deny"] = "allow"
    unknown_jurisdiction: Literal["allow", "deny"] = "allow"
    crops: bool = True
    rules: list[Rule] = Field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


class Policy:
    """A loaded jurisdiction policy. ``allows(jurisdiction, purpose)`` is the one question."""

    def __init__(self, doc: PolicyDoc, source: str = "<memory>") -> None:
        self.doc = doc
        self.source = source

    # -- construction ----------------------------------------------------------
    @classmethod
    def default(cls) -> Policy:
        rules = [Rule(jurisdiction=j, decision="deny", reason=r) for j, r in DEFAULT_DENY]
        return cls(PolicyDoc(version="default-1", rules=rules), "built-in default")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<memory>") -> Policy:
        try:
            return cls(PolicyDoc.model_validate(data), source)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise ConfigError(f"{source}: invalid policy at {where}: {first['msg']}") from None

    @classmethod
    def load(cls, path: Path | str) -> Policy:
        path = Path(path)
        return cls.from_dict(read_mapping(path, "policy file"), str(path))

    # -- questions -------------------------------------------------------------
    @property
    def version(self) -> str:
        return self.doc.version

    def decide(self, jurisdiction: str | None, purpose: str | None = None) -> Decision:
        purpose = purpose or DEFAULT_PURPOSE
        if not jurisdiction or not jurisdiction.strip():
            ok = self.doc.unknown_jurisdiction == "allow"
            return Decision(ok, f"no jurisdiction: policy {self.version} says {self.doc.unknown_jurisdiction}")
        code = jurisdiction.strip().upper()
        for rule in self.doc.rules:
            if rule.matches(code, purpose):
                why = f"{code} {rule.decision} by policy {self.version} rule {rule.jurisdiction}"
                return Decision(rule.decision == "allow", why + (f" ({rule.reason})" if rule.reason else ""))
        return Decision(self.doc.default == "allow", f"{code}: policy {self.version} default {self.doc.default}")

    def allows(self, jurisdiction: str | None, purpose: str | None = None) -> bool:
        return self.decide(jurisdiction, purpose).allowed

    def crops_allowed(self, jurisdiction: str | None, purpose: str | None = None) -> bool:
        """May a device there attach a face crop to a match event? The first matching rule that says, else the policy."""
        code = (jurisdiction or "").strip().upper()
        purpose = purpose or DEFAULT_PURPOSE
        for rule in self.doc.rules:
            if code and rule.matches(code, purpose) and rule.crops is not None:
                return rule.crops
        return self.doc.crops

    # -- persistence -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.doc.model_dump(mode="json", exclude_none=True)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1).encode()

    @property
    def digest(self) -> str:
        return sha256_bytes(self.to_json())

    def __repr__(self) -> str:
        return f"Policy(version={self.version!r}, source={self.source!r}, rules={len(self.doc.rules)})"
