"""CSV or JSON manifest: one row per photo.

Columns / keys: ``person_id``, ``name``, ``photo`` (path relative to the
manifest, absolute path, or http(s) URL; a path is stored absolute in the bundle) required; optional ``photo_id``,
``jurisdiction``, ``department``, ``use_for_recognition`` (true/false, default
true), ``box`` ("x1,y1,x2,y2"); every other column is an attribute kept for
alerts (age, sex, date_last_seen, case_url, ...). In JSON, ``attributes`` may
also be an object. JSON is a list of rows, ``{"photos": [...]}``, or JSON lines (.jsonl).
"""

from __future__ import annotations

import codecs
import csv
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lookout.errors import InputError
from lookout.files import read_file_bytes
from lookout.sync.records import PhotoRecord

KNOWN = {
    "person_id",
    "name",
    "photo",
    "photo_id",
    "jurisdiction",
    "department",
    "use_for_recognition",
    "box",
    "attributes",
}
TRUE = {"1", "true", "yes", "y", "t"}
FALSE = {"0", "false", "no", "n", "f"}


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE or text == "":
        return True
    if text in FALSE:
        return False
    raise InputError(where, f"use_for_recognition must be true or false, not {value!r}")


def _box(value: Any, where: str):
    if value in (None, ""):
        return None
    parts = value if isinstance(value, (list, tuple)) else str(value).replace(" ", "").split(",")
    try:
        box = tuple(float(v) for v in parts)
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise InputError(where, f"box must be x1,y1,x2,y2 with x2>x1 and y2>y1, not {value!r}")
    return box


def row_to_record(row: dict, base: Path | None, where: str) -> PhotoRecord:
    row = {str(k).strip(): v for k, v in row.items() if k is not None}
    missing = [k for k in ("person_id", "name", "photo") if not str(row.get(k) or "").strip()]
    if missing:
        raise InputError(where, f"missing {', '.join(missing)}")
    photo = str(row["photo"]).strip()
    if base is not None and "://" not in photo and not Path(photo).is_absolute():
        photo = str((base / photo).absolute())  # bundles keep it for reviewers: not bound to the builder's cwd
    attributes = dict(row.get("attributes") or {}) if isinstance(row.get("attributes"), dict) else {}
    attributes.update({k: v for k, v in row.items() if k not in KNOWN and v not in (None, "")})
    try:
        return PhotoRecord(
            person_id=str(row["person_id"]),
            name=str(row["name"]),
            photo=photo,
            photo_id=(str(row["photo_id"]).strip() or None) if row.get("photo_id") not in (None, "") else None,
            jurisdiction=row.get("jurisdiction") or None,
            department=row.get("department") or None,
            use_for_recognition=_bool(row.get("use_for_recognition", True), where),
            box=_box(row.get("box"), where),
            attributes=attributes,
            origin=where,
        )
    except ValidationError as err:
        first = err.errors()[0]
        raise InputError(where, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


MAX_RECORDS_FILE_BYTES = 256 << 20  # a people file of 14,400 records is a few MB
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, with or without the byte-order mark spreadsheets write


def read_text(path: Path, encoding: str | None = None) -> str:
    """A text file decoded with ``encoding`` (default UTF-8); InputError naming the file, the line and
    the byte when it is not in that encoding, or when the encoding is unknown."""
    encoding = encoding or DEFAULT_ENCODING
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(str(path), f"unknown text encoding {encoding!r} (e.g. utf-8, cp1252, latin-1)") from None
    data = read_file_bytes(path, MAX_RECORDS_FILE_BYTES)  # regular files only, size-capped: never /dev/zero
    try:
        return data.decode(encoding)
    except LookupError:
        raise InputError(str(path), f"{encoding!r} is not a text encoding (e.g. utf-8, cp1252, latin-1)") from None
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(
            f"{path}:{line}",
            f"not valid {encoding} text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            f"give the file's encoding with --encoding (e.g. cp1252 or latin-1)",
        ) from None


def read_manifest_file(path: Path, encoding: str | None = None) -> list[PhotoRecord]:
    """All rows of a manifest; a bad row stops the read with its line (fix the manifest and rerun)."""
    path = Path(path)
    base = path.parent
    text = read_text(path, encoding)
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"person_id", "name", "photo"} <= {f.strip() for f in reader.fieldnames}:
            raise InputError(str(path), "CSV header must have person_id, name and photo columns")
        records = []
        try:
            for row in reader:
                records.append(row_to_record(row, base, f"{path}:{reader.line_num}"))
        except csv.Error as err:
            raise InputError(f"{path}:{reader.line_num}", f"not valid CSV ({err})") from None
        return records
    if path.suffix.lower() == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((json.loads(line), f"{path}:{i}"))
                except json.JSONDecodeError as err:
                    raise InputError(f"{path}:{i}", f"not JSON ({err.msg})") from None
                except RecursionError:
                    raise InputError(f"{path}:{i}", "JSON nested too deeply") from None
        return [row_to_record(r, base, w) for r, w in rows]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(str(path), f"not JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise InputError(str(path), "JSON nested too deeply") from None
    items = doc.get("photos") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InputError(str(path), 'JSON manifest must be a list of rows or {"photos": [...]}')
    out: list[PhotoRecord] = []
    for i, row in enumerate(items):
        if not isinstance(row, dict):
            raise InputError(f"{path}[{i}]", "row is not an object")
        out.append(row_to_record(row, base, f"{path}[{i}]"))
    return out
