"""Jurisdiction codes: free text in, an ISO 3166 code out, or a refusal that says why.

The policy's promise (never run face recognition on anyone in Illinois) holds only if
``Illinois``, ``us-il``, ``USA-IL``, ``US IL``, ``US\u2010IL`` (a Unicode hyphen) and ``US-IL``
followed by a zero-width space all mean ``US-IL``. ``parse_jurisdiction`` brings them
to one canonical code:

- Unicode NFKC, invisible format characters (zero-width spaces, direction marks, soft
  hyphens) and control characters removed, every dash-like character read as ``-``;
- case, and separators (space, ``_``, ``.``, ``/``, ``,``, ``:``) between the parts;
- ISO 3166-1 alpha-2 and alpha-3 country codes and country names (``USA`` -> ``US``);
- ISO 3166-2 subdivision codes, checked against the ISO list (``pycountry``);
  a local level after a known subdivision is kept (``US-IL-COOK``); one that is itself a
  subdivision of the same country (``US-MO/IL``, ``US-IN-IL``: the St. Louis or Chicago
  metro written as two states) is a second reading (``US-IL``), so the policy denies it
  when it denies either;
- US state names and USPS abbreviations (``Illinois``, ``NY`` -> ``US-NY``).

Some inputs have more than one reading: ``IL`` is Israel's ISO code and Illinois' USPS
abbreviation, ``Georgia`` a country and a state. The code keeps them all
(``Jurisdiction.readings``) and the policy denies when any reading is denied: fail
closed. Anything that cannot be read raises ``InputError`` with the reason; the policy
denies it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import pycountry

from lookout.errors import InputError

HINT = "use an ISO 3166-2 code such as US-IL, DE-BY or GB, a country name, or a US state name or USPS code"
_SEPARATORS = re.compile(r"[\s_./,:;-]+")
_ABBREVIATION = re.compile(r"(?<![A-Za-z])(?:[A-Za-z]\.){2,3}")
_LOCAL_PART = re.compile(r"^[A-Z0-9]{1,16}$")
_EXTRA_DASHES = {"\u2212", "\u2043", "\ufe63", "\uff0d", "\u02d7", "\u2010", "\u2011"}


@dataclass(frozen=True)
class Jurisdiction:
    """A parsed jurisdiction: ``code`` is canonical; ``readings`` every code the input may mean, ``code`` first."""

    code: str
    readings: tuple[str, ...]

    @property
    def ambiguous(self) -> bool:
        return len(self.readings) > 1


def clean_text(text: str) -> str:
    """NFKC, invisible and control characters dropped, dashes as ``-``, blanks collapsed, trimmed."""
    out = []
    for char in unicodedata.normalize("NFKC", text):
        category = unicodedata.category(char)
        if category == "Pd" or char in _EXTRA_DASHES:
            out.append("-")
        elif category in ("Cf", "Cc") and not char.isspace():
            continue
        elif char.isspace() or category in ("Zs", "Zl", "Zp"):
            out.append(" ")
        else:
            out.append(char)
    return " ".join("".join(out).split())


# Cyrillic and Greek letters that look like Latin ones (after casefolding): "Police" spelt with a Cyrillic o
# must not slip past a department's opt-out.
_LOOK_ALIKES = str.maketrans(
    "авеёкмнорстухѕіїјԁԛԝһӏαβεηικνορτυχζμω",
    "abeekmhopctyxsiijdqwhlabenikvoptuxzmw",
)


def _key(name: str) -> str:
    """Names compared without case, accents, punctuation, invisible characters or look-alike letters."""
    decomposed = unicodedata.normalize("NFKD", clean_text(name).casefold())
    letters = "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_LOOK_ALIKES)
    return " ".join(re.sub(r"[^0-9a-z]+", " ", letters).split())


@lru_cache(maxsize=1)
def _tables() -> tuple[frozenset[str], dict[str, str], frozenset[str], dict[str, tuple[str, ...]]]:
    """alpha-2 codes; alpha-3 -> alpha-2; ISO 3166-2 codes; name -> codes (countries and US states)."""
    alpha2 = frozenset(c.alpha_2 for c in pycountry.countries)
    alpha3 = {c.alpha_3: c.alpha_2 for c in pycountry.countries}
    subdivisions = frozenset(s.code.upper() for s in pycountry.subdivisions)
    names: dict[str, list[str]] = {}
    for c in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            value = getattr(c, attr, None)
            if value:
                names.setdefault(_key(value), []).append(c.alpha_2)
    for extra, code in (("usa", "US"), ("united states of america", "US"), ("uk", "GB"), ("great britain", "GB")):
        names.setdefault(extra, []).append(code)
    for s in pycountry.subdivisions.get(country_code="US"):  # type: ignore[no-untyped-call]  # pycountry is untyped
        names.setdefault(_key(s.name), []).append(s.code.upper())
    return alpha2, alpha3, subdivisions, {k: tuple(dict.fromkeys(v)) for k, v in names.items()}


def _country(token: str) -> str | None:
    alpha2, alpha3, _subs, names = _tables()
    if token in alpha2:
        return token
    if token in alpha3:
        return alpha3[token]
    found = [c for c in names.get(_key(token), ()) if "-" not in c]
    return found[0] if len(found) == 1 else None


def _single(token: str) -> tuple[str, ...]:
    """Readings of a one-part input: a country code or name, a USPS abbreviation, a US state name."""
    alpha2, alpha3, subdivisions, names = _tables()
    readings: list[str] = []
    upper = token.upper()
    if upper in alpha2:
        readings.append(upper)
    elif upper in alpha3:
        readings.append(alpha3[upper])
    if len(upper) == 2 and f"US-{upper}" in subdivisions:
        readings.append(f"US-{upper}")
    readings.extend(names.get(_key(token), ()))
    return tuple(dict.fromkeys(readings))


def _compound(parts: list[str], text: str) -> tuple[str, ...]:
    """``<country>-<subdivision>[-<local>...]``; the subdivision may be a US state's name."""
    _alpha2, _alpha3, subdivisions, names = _tables()
    country = _country(parts[0])
    if country is None:
        # "Illinois, USA" / "New York US": a state name followed by its country
        tail = _country(parts[-1])
        if tail == "US":
            states = [c for c in names.get(_key(" ".join(parts[:-1])), ()) if c.startswith("US-")]
            if len(states) == 1:
                return (states[0],)
        # "New York" split at its space
        whole = names.get(_key(" ".join(parts)), ())
        if whole:
            return whole
        raise InputError(f"jurisdiction {text!r}", f"{parts[0]!r} is not a country; {HINT}")
    subdivision = f"{country}-{parts[1]}"
    local = parts[2:]
    if subdivision not in subdivisions:
        rest = " ".join(parts[1:])
        states = [c for c in names.get(_key(rest), ()) if c.startswith(f"{country}-")]
        if len(states) == 1:
            return (states[0],)
        raise InputError(f"jurisdiction {text!r}", f"{subdivision} is not an ISO 3166-2 subdivision; {HINT}")
    if len(local) > 1:
        raise InputError(f"jurisdiction {text!r}", f"at most one local level after {subdivision}; {HINT}")
    for part in local:
        if not _LOCAL_PART.match(part):
            raise InputError(f"jurisdiction {text!r}", f"local level {part!r} is not letters and digits; {HINT}")
    readings = ["-".join([subdivision, *local])]
    for part in local:  # "US-MO/IL", "US-IN-IL": the "local level" may be a second subdivision
        other = _subdivision_reading(country, part)
        if other is not None and other != subdivision:
            readings.append(other)
    return tuple(readings)


def _subdivision_reading(country: str, part: str) -> str | None:
    """The subdivision of ``country`` that a local level may also mean (``IL`` in ``US-MO-IL``: Illinois), or None."""
    _alpha2, _alpha3, subdivisions, names = _tables()
    if f"{country}-{part}" in subdivisions:
        return f"{country}-{part}"
    states = [c for c in names.get(_key(part), ()) if c.startswith(f"{country}-")]
    return states[0] if len(states) == 1 else None


def department_key(name: str) -> str:
    """How department names are compared by policy rules (``Springfield  P.D.`` == ``springfield p d``)."""
    return _key(name)


def parse_jurisdiction(text: str) -> Jurisdiction:
    """The canonical code(s) of ``text``, or InputError saying why it cannot be read."""
    if not isinstance(text, str):
        raise InputError(f"jurisdiction {text!r}", f"must be text; {HINT}")
    cleaned = clean_text(text)
    if not cleaned:
        raise InputError(f"jurisdiction {text!r}", f"is empty; {HINT}")
    if len(cleaned) > 100:
        raise InputError(f"jurisdiction {cleaned[:40]!r}...", f"is {len(cleaned)} characters long; {HINT}")
    cleaned = _ABBREVIATION.sub(lambda m: m.group(0).replace(".", ""), cleaned)  # U.S.A. -> USA
    readings = _single(cleaned)
    if not readings:
        parts = [p for p in _SEPARATORS.split(cleaned.upper()) if p]
        if len(parts) >= 2:
            readings = _compound(parts, text)
        elif parts:
            readings = _single(parts[0])
    if not readings:
        raise InputError(f"jurisdiction {text!r}", f"unknown; {HINT}")
    return Jurisdiction(readings[0], readings)


def normalise_jurisdiction(text: str) -> str:
    """The canonical code of ``text`` (``Illinois`` -> ``US-IL``); InputError if it cannot be read."""
    return parse_jurisdiction(text).code


def is_blank(text: object) -> bool:
    """No jurisdiction at all: None, or text without a letter or digit (``""``, ``" "``, ``"-"``, ``"--"``, ``"."``:
    what APIs and spreadsheets put in an unknown field). Never a country, never a place."""
    return text is None or not any(c.isalnum() for c in clean_text(str(text)))


def jurisdiction_or_raw(text: str | None) -> str | None:
    """For records: the canonical code when ``text`` can be read, else ``text`` as given (which the
    policy then denies, naming it). None and blank (``is_blank``) stay None (no jurisdiction given)."""
    if is_blank(text):
        return None
    try:
        return normalise_jurisdiction(str(text))
    except InputError:
        return str(text).strip()
