"""What face recognition is used for: one closed vocabulary, read the same way everywhere.

A policy rule may allow or deny by purpose, so a purpose is a key to people's rights: when it is
free text, ``Commercial`` escapes a rule written for ``commercial`` (attack A36). Every place that
takes a purpose (``gallery build --purpose``, a bundle's manifest, a device's ``purpose``, policy
rules, the relay and the console) reads it through :func:`parse_purpose`: spelling is normalised
(case, blanks, ``_`` and Unicode dashes as ``-``, look-alike letters), and a word outside
:data:`PURPOSES` is refused with one line naming it. A policy asked about a purpose it cannot read
denies (fail closed).
"""

from __future__ import annotations

import argparse
from typing import Annotated

from pydantic import AfterValidator

from lookout.errors import InputError
from lookout.gallery.jurisdiction import department_key

#: the purposes Lookout knows, with what each means (docs/gallery.md lists them)
PURPOSES: dict[str, str] = {
    "identification": "identifying enrolled people, nothing more said (the default)",
    "missing-persons": "finding people reported missing",
    "accountability": "identifying public officials, such as police officers, for accountability",
    "law-enforcement": "identification by or for law enforcement",
    "commercial": "identifying customers, staff or visitors for a business",
    "research": "research and evaluation",
}
DEFAULT_PURPOSE = "identification"
ANY_PURPOSE = "*"  # in policy rules only: every purpose


def parse_purpose(text: object, source: str = "purpose") -> str:
    """The canonical purpose ``text`` names; :class:`InputError` naming ``source`` if it names none."""
    if not isinstance(text, str):
        raise InputError(source, f"a purpose is a word, not {type(text).__name__}: one of {', '.join(PURPOSES)}")
    key = department_key(text).replace(" ", "-")  # case, accents, look-alikes, separators as department names
    if key in PURPOSES:
        return key
    shown = text if len(text) <= 40 else text[:40] + "..."
    raise InputError(source, f"unknown purpose {shown!r}: one of {', '.join(PURPOSES)}")


def argparse_purpose(text: str) -> str:
    """``type=`` for a ``--purpose`` option: the canonical purpose, or argparse's one-line error."""
    try:
        return parse_purpose(text, "--purpose")
    except InputError as err:
        raise argparse.ArgumentTypeError(err.reason) from None


def _purpose_value(value: str) -> str:
    try:
        return parse_purpose(value)
    except InputError as err:
        raise ValueError(err.reason) from None


#: a purpose in a config or manifest model: canonical, or refused at load
Purpose = Annotated[str, AfterValidator(_purpose_value)]
