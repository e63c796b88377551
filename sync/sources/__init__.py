"""Gallery sources: each yields ``PhotoRecord``s (lookout.sync.records).

- ``csv_json``: a CSV or JSON manifest, one row per photo;
- ``folders``: a folder of identity folders (``<person>/<photo>``);
- ``http_api``: an HTTP JSON API enumerated by integer id (``/cases/1``, ``/cases/2``, ...).

``open_source(spec)`` picks one from a command-line argument. ``jurisdiction`` is the
source-wide default for records that give none (``--jurisdiction``); an API source may
declare it in its config instead (both, differing: refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lookout.errors import ConfigError, InputError
from lookout.sync.records import PhotoRecord, source_jurisdiction, with_jurisdiction
from lookout.sync.sources.csv_json import read_manifest_file
from lookout.sync.sources.folders import read_folders
from lookout.sync.sources.http_api import HttpApiSource


def open_source(
    spec: str,
    work_dir: Path | None = None,
    people: Path | None = None,
    api_config: Path | None = None,
    encoding: str | None = None,
    jurisdiction: str | None = None,
) -> Iterator[PhotoRecord]:
    """A folder -> identity folders; .csv/.json -> manifest; http(s) URL template or --api-config -> HTTP API."""
    code = source_jurisdiction(jurisdiction)  # an unreadable one is refused before the source is read
    if api_config is not None or spec.startswith(("http://", "https://")):
        api = HttpApiSource.from_config(api_config, url_template=spec if "://" in spec else None, state_dir=work_dir)
        declared = api.config.jurisdiction
        if code is not None and declared is not None and code != declared:
            raise ConfigError(
                f"--jurisdiction {code} but {api_config} says jurisdiction: {declared}: declare the source's "
                "jurisdiction in one place"
            )
        return with_jurisdiction(api.records(), code)
    path = Path(spec)
    if path.is_dir():
        return with_jurisdiction(read_folders(path, people=people, encoding=encoding), code)
    if path.suffix.lower() in (".csv", ".json", ".jsonl"):
        return with_jurisdiction(read_manifest_file(path, encoding), code)
    if not path.exists():
        raise InputError(spec, "no such file or folder")
    raise InputError(spec, "not a folder of identity folders, a .csv/.json manifest, or an http(s) URL")
