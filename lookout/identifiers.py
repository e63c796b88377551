"""One rule for the identifiers a gallery hands to devices and subscribers.

A person id travels from a source record into the bundle, then into every match
event (``person_id`` is the schema's ``text``: 1 to 128 characters). An id the event
cannot carry must be refused where it enters, at enrolment, not discovered by the
device at the first sighting. The same rule also refuses what would make two ids
look the same to a reviewer or break a log line: control characters, invisible
format characters (zero-width spaces, direction marks) and surrounding blanks.

``identifier_problem`` says what is wrong (or None); ``check_identifier`` raises.
"""

from __future__ import annotations

import unicodedata

from lookout.errors import InputError
from lookout.events import TEXT_MAX_CHARS

ID_MAX_CHARS = TEXT_MAX_CHARS  # person ids, gallery ids: what a match event can carry
PHOTO_ID_MAX_CHARS = 2 * TEXT_MAX_CHARS + 1  # "<person_id>/<photo name>": never sent in events
VERSION_MAX_CHARS = TEXT_MAX_CHARS  # policy and bundle versions are sent in every event too

_FORBIDDEN_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def identifier_problem(value: object, max_chars: int = ID_MAX_CHARS) -> str | None:
    """Why ``value`` cannot be an identifier, or None when it can."""
    if not isinstance(value, str):
        return f"must be text, not {type(value).__name__}"
    if not value:
        return "is empty"
    if len(value) > max_chars:
        return f"is {len(value)} characters long; at most {max_chars} fit in a match event"
    if value != value.strip():
        return "starts or ends with blank space"
    for i, char in enumerate(value):
        category = unicodedata.category(char)
        if category in _FORBIDDEN_CATEGORIES:
            return f"holds {_FORBIDDEN_CATEGORIES[category]} (U+{ord(char):04X}) at position {i + 1}"
    return None


def check_identifier(value: object, what: str = "identifier", max_chars: int = ID_MAX_CHARS) -> str:
    """``value`` if it is a usable identifier, else InputError naming it (shortened) and the reason."""
    problem = identifier_problem(value, max_chars)
    if problem is not None:
        raise InputError(f"{what} {shorten(value)}", problem)
    return value  # type: ignore[return-value]


def shorten(value: object, keep: int = 40) -> str:
    """``repr`` of a value cut to a readable length, for messages about over-long input."""
    text = repr(value)
    return text if len(text) <= keep + 2 else f"{text[:keep]}...' ({len(str(value))} characters)"
