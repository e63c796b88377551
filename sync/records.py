"""What sources yield: one ``PhotoRecord`` per photo; ``PersonRecord`` groups them by person.

Person-level fields (name, jurisdiction, department, attributes) are taken from
a person's first record; later records may add attributes but not change them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


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

    @field_validator("person_id", "name", "photo")
    @classmethod
    def _required(cls, value: str) -> str:
        value = str(value).strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("jurisdiction", "department")
    @classmethod
    def _blank_none(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        return value or None

    @property
    def key(self) -> str:
        if self.photo_id:
            return self.photo_id
        tail = self.photo.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "photo"
        return f"{self.person_id}/{tail}"


class PersonRecord(BaseModel):
    person_id: str
    name: str
    jurisdiction: str | None = None
    department: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    photos: list[PhotoRecord] = Field(default_factory=list)


def group_persons(records: Iterable[PhotoRecord]) -> dict[str, PersonRecord]:
    """Group photo records by person, in first-seen order; photo ids made unique per gallery."""
    persons: dict[str, PersonRecord] = {}
    seen: set[str] = set()
    for rec in records:
        person = persons.get(rec.person_id)
        if person is None:
            person = persons[rec.person_id] = PersonRecord(
                person_id=rec.person_id,
                name=rec.name,
                jurisdiction=rec.jurisdiction,
                department=rec.department,
                attributes=dict(rec.attributes),
            )
        else:
            for k, v in rec.attributes.items():
                person.attributes.setdefault(k, v)
        key, n = rec.key, 2
        while key in seen:
            key, n = f"{rec.key}#{n}", n + 1
        seen.add(key)
        person.photos.append(rec.model_copy(update={"photo_id": key}))
    return persons
