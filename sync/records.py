"""What sources yield: one ``PhotoRecord`` per photo; ``PersonRecord`` groups them by person.

Person-level fields (name, jurisdiction, department, attributes) are taken from
a person's first record; later records may add attributes but not change them. A
later record that names the same ``person_id`` with another name, jurisdiction or
department is a conflict (two people under one id, or a typo): it is refused
(``PhotoRecord.refusal`` says why) and appears in the failure-to-enrol report.

Jurisdictions are brought to their canonical ISO code when they can be read
(``Illinois`` -> ``US-IL``); one that cannot be read is kept as given, and the
policy denies it, naming it. A record with no jurisdiction takes the source-wide
default the operator declares (``with_jurisdiction``: ``gallery build --jurisdiction``,
an API source's ``jurisdiction``); with none, it stays unknown and the policy denies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from lookout.errors import ConfigError, InputError
from lookout.gallery.jurisdiction import clean_text, jurisdiction_or_raw, normalise_jurisdiction
from lookout.identifiers import PHOTO_ID_MAX_CHARS, identifier_problem


class PhotoRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_id: str
    name: str
    photo: str  # local path or http(s) URL
    photo_id: str | None = None  # stable id of this photo; default person_id/<file name>
    jurisdiction: str | None = None
    department: str | None = None
    use_for_recognition: bool = True
    box: tuple[float, float, float, float] | None = None  # which face, when the photo has several
    attributes: dict[str, Any] = Field(default_factory=dict)
    origin: str = ""  # where the record came from (file:line, URL), for messages
    refusal: tuple[str, str] | None = None  # (reason code, detail): a source or group_persons refused it

    @field_validator("person_id", "name", "photo")
    @classmethod
    def _required(cls, value: str) -> str:
        value = str(value).strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("jurisdiction")
    @classmethod
    def _jurisdiction(cls, value: str | None) -> str | None:
        return jurisdiction_or_raw(value)

    @field_validator("department")
    @classmethod
    def _department(cls, value: str | None) -> str | None:
        return clean_text(str(value)) or None if value is not None else None

    def problem(self) -> tuple[str, str] | None:
        """(reason code, detail) when this record must not be enrolled whatever its photo holds."""
        bad_id = identifier_problem(self.person_id)
        if bad_id:
            return "bad_identifier", f"person_id {bad_id}"
        bad_photo_id = identifier_problem(self.key, PHOTO_ID_MAX_CHARS)
        if bad_photo_id:
            return "bad_identifier", f"photo_id {bad_photo_id}"
        return self.refusal

    @property
    def key(self) -> str:
        if self.photo_id:
            return self.photo_id
        tail = self.photo.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "photo"
        return f"{self.person_id}/{tail}"


def source_jurisdiction(text: str | None, where: str = "--jurisdiction") -> str | None:
    """A source-wide default jurisdiction, normalised like every other (``Illinois`` -> ``US-IL``).
    One that cannot be read is a configuration error: refused before any record is read."""
    if text is None or not clean_text(str(text)):
        return None
    try:
        return normalise_jurisdiction(str(text))
    except InputError as err:
        raise ConfigError(f"{where} {text!r}: {err.reason}") from None


def _source_jurisdiction_field(value: str | None) -> str | None:
    try:
        return source_jurisdiction(value, "jurisdiction")
    except ConfigError as err:
        raise ValueError(str(err)) from None


#: a source-wide default jurisdiction in a config model: normalised, or the config refused at load
SourceJurisdiction = Annotated[str | None, AfterValidator(_source_jurisdiction_field)]


def with_jurisdiction(records: Iterable[PhotoRecord], default: str | None) -> Iterator[PhotoRecord]:
    """The records, each with no jurisdiction of its own given ``default`` (normalised; None: left unknown)."""
    code = source_jurisdiction(default)  # checked now, before any record is read
    if code is None:
        return iter(records)
    return (rec if rec.jurisdiction is not None else rec.model_copy(update={"jurisdiction": code}) for rec in records)


class PersonRecord(BaseModel):
    person_id: str
    name: str
    jurisdiction: str | None = None
    department: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    photos: list[PhotoRecord] = Field(default_factory=list)


def _same(a: str | None, b: str | None) -> bool:
    return " ".join((a or "").casefold().split()) == " ".join((b or "").casefold().split())


def conflict_with(person: PersonRecord, rec: PhotoRecord) -> str | None:
    """Why ``rec`` contradicts what earlier records said about ``person``, or None."""
    for field in ("name", "jurisdiction", "department"):
        earlier, later = getattr(person, field), getattr(rec, field)
        if not _same(earlier, later):
            first = person.photos[0].origin if person.photos and person.photos[0].origin else "an earlier record"
            return f"person_id {rec.person_id!r} has {field} {later!r} here but {earlier!r} in {first}: record refused"
    return None


def group_persons(records: Iterable[PhotoRecord]) -> dict[str, PersonRecord]:
    """Group photo records by person, in first-seen order; photo ids made unique per gallery.
    A record contradicting the person's first one is kept with ``refusal`` set (and then refused)."""
    persons: dict[str, PersonRecord] = {}
    seen: set[str] = set()
    for rec in records:
        person = persons.get(rec.person_id)
        conflict = None
        if person is None:
            person = persons[rec.person_id] = PersonRecord(
                person_id=rec.person_id,
                name=rec.name,
                jurisdiction=rec.jurisdiction,
                department=rec.department,
                attributes=dict(rec.attributes),
            )
        elif (conflict := conflict_with(person, rec)) is None:
            for k, v in rec.attributes.items():
                person.attributes.setdefault(k, v)
        key, n = rec.key, 2
        while key in seen:
            key, n = f"{rec.key}#{n}", n + 1
        seen.add(key)
        update: dict = {"photo_id": key}
        if conflict is not None:
            update["refusal"] = ("conflicting_record", conflict)
        person.photos.append(rec.model_copy(update=update))
    return persons
