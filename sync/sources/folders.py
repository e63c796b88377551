"""A folder of identity folders: ``<root>/<person_id>/<photo>``.

The folder name is the person id and (unless given) the name. Person details
can be added with an optional ``<person>/person.json`` (name, jurisdiction,
department, attributes...), or for all people at once with a ``people`` CSV/JSON
file or dict keyed by person_id (as `--people FILE`). Files at the root (not in
a person folder) are ignored.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from lookout.errors import InputError
from lookout.sync.records import PhotoRecord
from lookout.sync.sources.csv_json import read_text, row_to_record

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def load_people(source: Path | dict | None, encoding: str | None = None) -> dict[str, dict]:
    if source is None:
        return {}
    if isinstance(source, dict):
        return {str(k): dict(v) for k, v in source.items()}
    path = Path(source)
    text = read_text(path, encoding)
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(str(path), f"not JSON ({err.msg})") from None
        rows = [{"person_id": k, **v} for k, v in doc.items()] if isinstance(doc, dict) else doc
    out = {}
    for row in rows:
        if not isinstance(row, dict) or not row.get("person_id"):
            raise InputError(str(path), "every entry needs a person_id")
        out[str(row["person_id"])] = {k: v for k, v in row.items() if v not in (None, "")}
    return out


def read_folders(root: Path, people: Path | dict | None = None, encoding: str | None = None) -> list[PhotoRecord]:
    root = Path(root)
    if not root.is_dir():
        raise InputError(str(root), "not a folder")
    extra = load_people(people, encoding)
    records = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        details: dict[str, Any] = {}
        side = folder / "person.json"
        if side.is_file():
            try:
                details.update(json.loads(read_text(side, encoding)))
            except json.JSONDecodeError as err:
                raise InputError(str(side), f"unreadable ({err})") from None
        details.update(extra.get(folder.name, {}))
        photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for photo in photos:
            row = {
                "name": folder.name,
                **details,
                "person_id": folder.name,
                "photo": str(photo.absolute()),  # bundles keep it for reviewers: not bound to the builder's cwd
                "photo_id": f"{folder.name}/{photo.name}",
            }
            records.append(row_to_record(row, None, str(photo)))
    if not records:
        raise InputError(str(root), "no identity folders with images (expected <person>/<photo>.jpg)")
    return records
