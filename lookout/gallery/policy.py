"""Jurisdiction policy: where face recognition is allowed, per purpose and per department.

A policy file (YAML or JSON) is an ordered list of rules; the first rule that
matches a (jurisdiction, department, purpose) decides, otherwise ``default`` does::

    version: "2025-01-01"
    default: allow            # for jurisdictions no rule matches
    unknown_jurisdiction: deny    # people with no jurisdiction at all (the default; see below)
    rules:
      - jurisdiction: US-IL   # matches US-IL and its subdivisions (US-IL-COOK)
        decision: deny
        reason: Illinois BIPA
      - jurisdiction: US-TX
        purposes: [commercial]  # only for these purposes; omitted = every purpose
        decision: deny
        reason: Texas CUBI
      - department: Springfield Police Department   # a department that opted out, wherever it is
        decision: deny
      - jurisdiction: US-CA
        department: Oakland Police Department       # both: that department, there
        decision: deny
      - jurisdiction: DE
        decision: allow
        crops: false          # recognition allowed, but no face image leaves the device

``crops`` (per rule, or for the whole policy; default true) says whether a
device may attach a small JPEG of a matched face to its event.

Jurisdictions are ISO 3166 codes, normalised by ``lookout.gallery.jurisdiction``
(``Illinois``, ``USA-IL``, ``us il`` all read ``US-IL``); a rule for ``US`` covers every
``US-*``, ``*`` covers everything. A jurisdiction that cannot be read is denied,
saying why; one with several readings (``IL``: Israel, or Illinois by its USPS code)
is denied when any reading is. Departments are compared without case, accents or
extra blanks.

Fail closed: a missing jurisdiction is an unknown one, and unknown is denied. A
record with no jurisdiction (and no source-wide default, ``gallery build --jurisdiction``)
is never enrolled, and a person with none in a bundle (an older build) makes a device,
``sync pull`` and ``lookout search`` refuse that bundle under the built-in policy. A
policy file may say ``unknown_jurisdiction: allow`` for people, as an operator's
deliberate, documented choice; it does not let a device run recognition without a
declared location (``location.jurisdiction``): a device always needs one.

The built-in denials (``BUILTIN_DENIALS``: US-IL, Illinois' BIPA) are a floor that no
policy file lifts: they are decided before any rule of the file, whatever its rules and
``default`` say, and a file with a rule allowing such a jurisdiction (or a part of it, or a
department there) is refused when it is loaded. An operator who writes a policy for
another purpose (Texas' commercial rule, say) has decided nothing about Illinois.

A country-level code (``US``, ``United States``) says nothing about where in the country a
person or device is: where the policy denies any subdivision of that country (US-IL), it is
denied too (it could be Illinois); write the subdivision (``US-CA``).

The gallery builder never embeds a photo whose record is denied; the bundle
carries the policy it was built with; the device refuses a bundle holding a
person its own policy denies, and drops search results for such people.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lookout.config_file import read_mapping
from lookout.digest import sha256_bytes
from lookout.errors import ConfigError, InputError
from lookout.gallery.jurisdiction import department_key, parse_jurisdiction
from lookout.gallery.purpose import ANY_PURPOSE, DEFAULT_PURPOSE, parse_purpose
from lookout.identifiers import VERSION_MAX_CHARS, identifier_problem

# The built-in policy's version. "default-1" allowed people with no jurisdiction; "default-2" denies them.
BUILTIN_VERSION = "default-2"
SUPERSEDED_BUILTIN_VERSIONS = frozenset({"default-1"})

# Jurisdictions where biometric identifiers may not be computed without written
# consent (the product never has it for a gallery): denied out of the box, and by every
# policy file too (a floor no file can lift: see the module's docstring).
BUILTIN_DENIALS = (
    ("US-IL", "Illinois Biometric Information Privacy Act (BIPA): no biometric identifier without written consent"),
)


def builtin_denial(code: str) -> tuple[str, str] | None:
    """(jurisdiction, reason) of the built-in denial covering canonical ``code`` (itself or a part of it), or None."""
    for jurisdiction, reason in BUILTIN_DENIALS:
        if code == jurisdiction or code.startswith(jurisdiction + "-"):
            return jurisdiction, reason
    return None


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jurisdiction: str | None = None  # None: any jurisdiction (a department rule)
    department: str | None = None  # None: any department
    decision: Literal["allow", "deny"]
    purposes: list[str] | None = None  # None: every purpose
    reason: str = ""
    crops: bool | None = None  # may matched-face crops leave the device? None: the policy's ``crops``

    @field_validator("jurisdiction")
    @classmethod
    def _norm(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.strip() == "*":
            return "*"
        try:
            return parse_jurisdiction(value).code
        except InputError as err:
            raise ValueError(str(err)) from None

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, value: list[str] | None) -> list[str] | None:
        """Known purposes only (lookout.gallery.purpose): a misspelt one would never match, and fail open."""
        if value is None:
            return None
        try:
            return [p if p.strip() == ANY_PURPOSE else parse_purpose(p, "purposes") for p in value]
        except InputError as err:
            raise ValueError(err.reason) from None

    @field_validator("department")
    @classmethod
    def _department(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not department_key(value):
            raise ValueError("empty department")
        return value.strip()

    @model_validator(mode="after")
    def _says_where(self) -> Rule:
        if self.jurisdiction is None and self.department is None:
            raise ValueError("a rule needs a jurisdiction, a department, or both")
        return self

    def denies_unsaid_purpose(self, purpose: str) -> bool:
        """Is ``purpose`` the unsaid default, caught by this rule denying specific purposes?"""
        return purpose == DEFAULT_PURPOSE and self.decision == "deny" and bool(self.purposes)

    @property
    def label(self) -> str:
        parts = [p for p in (self.jurisdiction, self.department and f"department {self.department!r}") if p]
        return " ".join(parts)

    def matches(self, code: str | None, department: str | None, purpose: str) -> bool:
        """Does this rule speak for this (canonical code or None, department or None, purpose)?

        The default purpose says nothing more (``identification``): it may be any purpose, so a rule that denies a
        specific one speaks for it too (fail closed, as a country-level code is denied where a subdivision is)."""
        if (
            self.purposes is not None
            and ANY_PURPOSE not in self.purposes
            and purpose not in self.purposes
            and not self.denies_unsaid_purpose(purpose)
        ):
            return False
        if self.department is not None and (
            department is None or department_key(department) != department_key(self.department)
        ):
            return False
        if self.jurisdiction is None or self.jurisdiction == "*":
            return self.jurisdiction is None or code is not None
        return code is not None and (code == self.jurisdiction or code.startswith(self.jurisdiction + "-"))


class PolicyDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    default: Literal["allow", "deny"] = "allow"
    # Fail closed: a person with no jurisdiction may be anywhere, Illinois included. Only a policy file that
    # says "allow" explicitly (an operator's documented choice) lets such people in.
    unknown_jurisdiction: Literal["allow", "deny"] = "deny"
    crops: bool = True
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: object) -> str:
        """Every match event carries the policy version: it must fit there (``lookout.identifiers``)."""
        value = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        problem = identifier_problem(value, VERSION_MAX_CHARS)
        if problem:
            raise ValueError(f"version {problem}")
        return value  # type: ignore[return-value]

    @field_validator("rules")
    @classmethod
    def _no_lifting_builtin_denials(cls, rules: list[Rule]) -> list[Rule]:
        """A rule allowing a jurisdiction the built-in policy denies is refused, loudly, before anything runs:
        the built-in denials are a floor (fail closed; docs/gallery.md "Jurisdiction policy")."""
        for n, rule in enumerate(rules):
            if rule.decision != "allow" or rule.jurisdiction in (None, "*"):
                continue
            floor = builtin_denial(rule.jurisdiction)
            if floor is not None:
                raise ValueError(
                    f"rule {n} allows {rule.label}, which the built-in policy denies ({floor[1]}); the built-in "
                    f"denial of {floor[0]} is a floor no policy file can lift: remove the rule"
                )
        return rules


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    unknown: bool = False  # decided for a missing jurisdiction (by ``unknown_jurisdiction``)

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
        rules = [Rule(jurisdiction=j, decision="deny", reason=r) for j, r in BUILTIN_DENIALS]
        return cls(PolicyDoc(version=BUILTIN_VERSION, rules=rules), "built-in default")

    @property
    def superseded_builtin(self) -> bool:
        """An earlier built-in policy (as an older bundle carries it), replaced by today's ``default()``."""
        return self.version in SUPERSEDED_BUILTIN_VERSIONS

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

    def decide(self, jurisdiction: str | None, purpose: str | None = None, department: str | None = None) -> Decision:
        """Is face recognition allowed for someone (or a device) in ``jurisdiction`` and ``department``?

        Fail closed: a jurisdiction that cannot be read is denied; one with several readings
        (``IL``, ``US-MO-IL``) is denied when any reading is; a country-level code is denied where the
        policy denies a subdivision of that country; the built-in denials come before every rule;
        a missing one follows ``unknown_jurisdiction`` (deny unless the policy file says allow; denied
        as well when a rule for its department denies)."""
        try:
            purpose = parse_purpose(purpose or DEFAULT_PURPOSE)
        except InputError as err:
            return Decision(False, f"{err.reason}: denied (fail closed) by policy {self.version}")
        if jurisdiction is None or not str(jurisdiction).strip():
            return self._decide_missing(purpose, department)
        try:
            parsed = parse_jurisdiction(str(jurisdiction))
        except InputError as err:
            return Decision(False, f"{err.source}: {err.reason}: denied (fail closed) by policy {self.version}")
        decisions = [self._decide_code(code, purpose, department) for code in parsed.readings]
        denied = [d for d in decisions if not d.allowed]
        if not denied:
            return decisions[0]
        if parsed.ambiguous:
            readings = " or ".join(parsed.readings)
            return Decision(False, f"{jurisdiction!r} may mean {readings}; {denied[0].reason}")
        return denied[0]

    def _decide_code(self, code: str, purpose: str, department: str | None) -> Decision:
        floor = builtin_denial(code)
        if floor is not None:
            return Decision(False, f"{code} denied by the built-in policy, which no policy file lifts ({floor[1]})")
        if "-" not in code and code != "*":
            within = self._denied_subdivision(code, purpose, department)
            if within is not None:
                return Decision(
                    False,
                    f"{code} is a whole country, and policy {self.version} denies {within} within it (it could be "
                    f"{within}): give the ISO 3166-2 subdivision (e.g. {'US-CA' if code == 'US' else code + '-...'})",
                )
        for rule in self.doc.rules:
            if rule.matches(code, department, purpose):
                why = f"{code} {rule.decision} by policy {self.version} rule {rule.label}"
                if rule.purposes and purpose not in rule.purposes and rule.denies_unsaid_purpose(purpose):
                    why += (
                        f" for {', '.join(rule.purposes)}: purpose {purpose!r} does not say which, so it may be one"
                        " of those; name the purpose (--purpose, a device's purpose)"
                    )
                return Decision(rule.decision == "allow", why + (f" ({rule.reason})" if rule.reason else ""))
        return Decision(self.doc.default == "allow", f"{code}: policy {self.version} default {self.doc.default}")

    def _denied_subdivision(self, country: str, purpose: str, department: str | None) -> str | None:
        """A subdivision of ``country`` that the built-in floor or a rule denies (for this purpose and
        department), or None: a country-level code may be any of its subdivisions."""
        for jurisdiction, _reason in BUILTIN_DENIALS:
            if jurisdiction.startswith(country + "-"):
                return jurisdiction
        for rule in self.doc.rules:
            j = rule.jurisdiction
            if rule.decision == "deny" and j and j.startswith(country + "-") and rule.matches(j, department, purpose):
                return j
        return None

    def _decide_missing(self, purpose: str, department: str | None) -> Decision:
        ok = self.doc.unknown_jurisdiction == "allow"
        says = "allows" if ok else "denies (fail closed)"
        decision = Decision(
            ok,
            f"no jurisdiction: policy {self.version} {says} unknown jurisdictions "
            f"(unknown_jurisdiction: {self.doc.unknown_jurisdiction})",
            unknown=True,
        )
        for rule in self.doc.rules:
            if rule.jurisdiction is None and rule.matches(None, department, purpose):
                if rule.decision == "deny":
                    why = f"department {department!r} denied by policy {self.version} rule {rule.label}"
                    return Decision(False, why + (f" ({rule.reason})" if rule.reason else ""))
                break
        return decision

    def allows(self, jurisdiction: str | None, purpose: str | None = None, department: str | None = None) -> bool:
        return self.decide(jurisdiction, purpose, department).allowed

    def crops_allowed(self, jurisdiction: str | None, purpose: str | None = None) -> bool:
        """May a device there attach a face crop to a match event? The first matching rule that says, else the
        policy, for the jurisdiction's canonical code (``DE`` is Germany). One that cannot be read gets no crops."""
        try:
            purpose = parse_purpose(purpose or DEFAULT_PURPOSE)
        except InputError:
            return False
        if jurisdiction is None or not str(jurisdiction).strip():
            return self.doc.crops
        try:
            code = parse_jurisdiction(str(jurisdiction)).code
        except InputError:
            return False
        return self._crops_for(code, purpose)

    def _crops_for(self, code: str, purpose: str) -> bool:
        for rule in self.doc.rules:
            if rule.jurisdiction is not None and rule.matches(code, None, purpose) and rule.crops is not None:
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


def check_photos_taken_in(
    policy: Policy, jurisdiction: str | None, purpose: str | None = None, source: str = "--jurisdiction"
) -> None:
    """Refuse (:class:`InputError` naming ``source``) unless ``policy`` allows face recognition where photos were
    taken: the faces in them are people there (attacks A40, A46). Call it before any face is detected."""
    decision = policy.decide(jurisdiction, purpose)
    if not decision.allowed:
        raise InputError(source, f"face recognition is not allowed where the photos were taken: {decision.reason}")
