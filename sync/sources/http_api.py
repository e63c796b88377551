"""An HTTP JSON API enumerated by integer id (``/cases/1``, ``/cases/2``, ...), as NamUs was walked.

Configuration (YAML or JSON, `--api-config FILE`)::

    url_template: https://example.org/api/cases/{id}
    start_id: 1
    max_misses: 50          # stop after this many consecutive missing ids (404/410)
    min_interval_s: 0.5     # polite rate limit: at most one request per interval
    retries: 4              # 5xx, 429 and timeouts are retried with exponential backoff
    backoff_s: 1.0
    timeout_s: 20
    fields:                 # where each field is in a record (dotted paths; a list is joined with spaces)
      person_id: id
      name: [subject.firstName, subject.lastName]
      jurisdiction: location.state
      department: agency.name
      photos: images        # a list of URLs, or of objects holding one under `photo_url`
      photo_url: url
      photo_id: id                   # optional, per photo object: the API's id for the photo
      use_for_recognition: consent   # optional, per photo object
      attributes: {age: subject.age, sex: subject.sex, date_last_seen: sighting.date, case_url: link}
    jurisdiction_prefix: "US-"       # prepended to jurisdiction values ("IL" -> "US-IL")
    jurisdiction: US-CA              # for records that give none (else they are refused: unknown is denied)
    person_id_prefix: "namus-"

Resuming: the walk's position and every record fetched so far are kept in
``<state_dir>/http-<hash>.json`` and ``.jsonl``; a rerun of an interrupted walk continues
where it stopped and re-yields the records already fetched. Once a walk has finished, the
next run (the next ``gallery update`` with the same ``--work``) starts again from
``start_id`` and reads every record again: consent and jurisdiction never come from a cache.
Ids whose fetch failed after all retries are tried again on the next run.

Photo ids are stable for the photo, never its position in the record's list (a photo added in
front must not take a withdrawn photo's id): ``<person_id>/<id>`` from the photo object's
``fields.photo_id`` (default ``id``) when it is a short plain identifier, else
``<person_id>/u<first 16 hex of the SHA-256 of the photo URL>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lookout.config_file import read_mapping
from lookout.errors import ConfigError, InputError
from lookout.gallery.jurisdiction import is_blank
from lookout.http_client import FetchError, HttpClient, http_url_problem
from lookout.log import get_logger
from lookout.sync.records import PhotoRecord, SourceJurisdiction
from lookout.sync.sources.csv_json import row_to_record

log = get_logger(__name__)

PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # an API photo id used as is in the photo id


class FieldMap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person_id: str = "id"
    name: str | list[str] = "name"
    jurisdiction: str | None = "jurisdiction"
    department: str | None = "department"
    photos: str = "photos"
    photo_url: str = "url"
    photo_id: str | None = "id"  # in a photo object: the API's own id for the photo (else one from its URL)
    use_for_recognition: str | None = "use_for_recognition"
    attributes: dict[str, str] = Field(default_factory=dict)


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url_template: str
    start_id: int = 1
    max_misses: int = 50
    min_interval_s: float = 0.5
    retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 20.0
    fields: FieldMap = Field(default_factory=FieldMap)
    jurisdiction_prefix: str = ""
    jurisdiction: SourceJurisdiction = None  # the source-wide default for records that give none (like --jurisdiction)
    person_id_prefix: str = ""


def dig(doc: Any, path: str | None) -> Any:
    if not path:
        return None
    for part in path.split("."):
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


class HttpApiSource:
    def __init__(self, config: ApiConfig, state_dir: Path | None = None, client: HttpClient | None = None) -> None:
        if "{id}" not in config.url_template:
            raise ConfigError(f"url_template {config.url_template!r} has no {{id}} placeholder")
        problem = http_url_problem(config.url_template.replace("{id}", "1"))
        if problem:
            raise ConfigError(f"url_template {config.url_template!r}: {problem}")
        self.config = config
        self.client = client or HttpClient(config.min_interval_s, config.retries, config.backoff_s, config.timeout_s)
        tag = hashlib.sha256(config.url_template.encode()).hexdigest()[:12]
        self.state_dir = Path(state_dir) if state_dir else None
        self.state_path = self.state_dir / f"http-{tag}.json" if self.state_dir else None
        self.records_path = self.state_dir / f"http-{tag}.jsonl" if self.state_dir else None
        self.failed_ids: list[int] = []
        self.missing_ids: list[int] = []

    @classmethod
    def from_config(
        cls, path: Path | None, url_template: str | None = None, state_dir: Path | None = None, **overrides
    ) -> HttpApiSource:
        data: dict = {}
        if path is not None:
            data = read_mapping(Path(path), "API config")  # bounded: never /dev/zero or a pipe
        if url_template:
            data["url_template"] = url_template
        data.update(overrides)
        try:
            return cls(ApiConfig.model_validate(data), state_dir)
        except ValueError as err:
            raise ConfigError(f"{path or 'API config'}: {err}") from None

    # -- state ---------------------------------------------------------------------
    def _load_state(self) -> dict:
        if self.state_path and self.state_path.is_file():
            return json.loads(self.state_path.read_text())
        return {"next_id": self.config.start_id, "misses": 0, "failed": [], "done": False}

    def _save_state(self, state: dict) -> None:
        if self.state_dir and self.state_path:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.state_path)

    def _forget(self) -> None:
        """Drop the walk state and the records fetched: consent, jurisdiction and photos must never come from a
        cache once a walk has finished (a reused --work folder would otherwise keep a withdrawn consent or a
        move into a denied jurisdiction out of every later update)."""
        for path in (self.state_path, self.records_path):
            if path is not None:
                path.unlink(missing_ok=True)

    def _cached(self) -> dict[int, dict]:
        out: dict[int, dict] = {}
        if self.records_path and self.records_path.is_file():
            for line in self.records_path.read_text().splitlines():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interruption
                out[int(item["id"])] = item["record"]
        return out

    def _append(self, case_id: int, record: dict) -> None:
        if self.state_dir and self.records_path:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with open(self.records_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"id": case_id, "record": record}) + "\n")
                f.flush()
                os.fsync(f.fileno())

    # -- walking -------------------------------------------------------------------
    def fetch(self, case_id: int) -> dict | None:
        """One record, None when the id does not exist; FetchError when it could not be fetched."""
        url = self.config.url_template.format(id=case_id)
        try:
            body = self.client.get(url, accept="application/json")
        except FetchError as err:
            if err.status in (404, 410):
                return None
            raise
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested or a number too long to read
            raise FetchError(url, "response is not JSON (or nested too deeply, or a number too long)") from None
        if not isinstance(doc, dict):
            raise FetchError(url, "response is not a JSON object")
        return doc

    def walk(self, limit: int | None = None) -> dict[int, dict]:
        """Fetch new records (resuming), return every record known, by id. ``limit``: stop after
        that many ids this run (as if interrupted)."""
        state = self._load_state()
        if state.get("done"):  # the last walk finished: this is a new build, every record is read again
            self._forget()
            state = self._load_state()
        cached = self._cached()
        retry_ids = [i for i in state.get("failed", []) if i not in cached]
        state["failed"] = []
        walked = 0
        for case_id in retry_ids:
            self._visit(case_id, state, cached, count_miss=False)
        while state["misses"] < self.config.max_misses:
            if limit is not None and walked >= limit:
                self._save_state(state)
                return cached
            case_id = state["next_id"]
            self._visit(case_id, state, cached, count_miss=True)
            state["next_id"] = case_id + 1
            walked += 1
            self._save_state(state)
        state["done"] = True
        self._save_state(state)
        self.failed_ids = list(state["failed"])
        log.info(
            "source.http.done",
            url=self.config.url_template,
            records=len(cached),
            next_id=state["next_id"],
            failed=len(self.failed_ids),
            requests=self.client.requests,
        )
        return cached

    def _visit(self, case_id: int, state: dict, cached: dict, count_miss: bool) -> None:
        if case_id in cached:
            state["misses"] = 0
            return
        try:
            record = self.fetch(case_id)
        except FetchError as err:
            log.warning("source.http.failed", id=case_id, error=str(err))
            state["failed"].append(case_id)
            return
        if record is None:
            self.missing_ids.append(case_id)
            if count_miss:
                state["misses"] += 1
            return
        state["misses"] = 0
        cached[case_id] = record
        self._append(case_id, record)

    def records(self, limit: int | None = None) -> Iterator[PhotoRecord]:
        for case_id, doc in sorted(self.walk(limit).items()):
            yield from self.to_records(case_id, doc)

    @staticmethod
    def photo_url(record_url: str, raw: object) -> tuple[str, str | None]:
        """A photo reference from the API, resolved against the record's URL (``/img/1.jpg`` and
        ``../img/1.jpg`` are on the API's host); (url, None) when it is http(s), else (text, why not).
        An API never names a local file: ``/dev/zero`` means that path on the API's host."""
        if not isinstance(raw, str) or not raw.strip():
            return str(raw or ""), f"photo reference {raw!r} is not a URL"
        text = raw.strip()
        try:
            url = urllib.parse.urljoin(record_url, text)
        except ValueError as err:
            return text, f"photo URL {text[:200]!r} cannot be read ({err})"
        problem = http_url_problem(url)
        return (url, None) if problem is None else (text, f"photo URL {text[:200]!r} refused: {problem}")

    def jurisdiction_of(self, doc: dict) -> str | None:
        """The record's jurisdiction with ``jurisdiction_prefix`` put in front (``IL`` -> ``US-IL``), else the
        config's ``jurisdiction``, else None (unknown: denied). A blank value (``" "``, ``"-"``, ``"."``) is no
        jurisdiction: the prefix alone (``US-``) would read as the whole country."""
        value = dig(doc, self.config.fields.jurisdiction)
        if is_blank(value):
            return self.config.jurisdiction
        text, prefix = str(value).strip(), self.config.jurisdiction_prefix
        return text if text.upper().startswith(prefix.upper()) else prefix + text

    def photo_key(self, item: object, url: str) -> str:
        """The photo's part of its id: the API's own id for it, else a digest of its URL (never its list position)."""
        own = dig(item, self.config.fields.photo_id) if isinstance(item, dict) else None
        if isinstance(own, (str, int)) and not isinstance(own, bool) and PLAIN_ID.fullmatch(str(own)):
            return str(own)
        return "u" + hashlib.sha256(url.encode()).hexdigest()[:16]

    def to_records(self, case_id: int, doc: dict) -> list[PhotoRecord]:
        f, where = self.config.fields, self.config.url_template.format(id=case_id)
        pid = dig(doc, f.person_id)
        names = [f.name] if isinstance(f.name, str) else f.name
        name = " ".join(str(v) for v in (dig(doc, p) for p in names) if v not in (None, ""))
        jurisdiction = self.jurisdiction_of(doc)
        attributes = {k: v for k, v in ((k, dig(doc, p)) for k, p in f.attributes.items()) if v not in (None, "")}
        attributes.setdefault("source_id", case_id)
        photos = dig(doc, f.photos) or []
        if not isinstance(photos, list):
            photos = [photos]
        out = []
        for i, item in enumerate(photos):
            raw = item.get(f.photo_url) if isinstance(item, dict) else item
            url, refusal = self.photo_url(where, raw)
            use = item.get(f.use_for_recognition, True) if isinstance(item, dict) and f.use_for_recognition else True
            row = {
                "person_id": f"{self.config.person_id_prefix}{pid if pid not in (None, '') else case_id}",
                "name": name or f"case {case_id}",
                "photo": str(url or ""),
                "jurisdiction": jurisdiction,
                "department": dig(doc, f.department),
                "use_for_recognition": use,
                "attributes": attributes,
                "photo_id": f"{self.config.person_id_prefix}{pid if pid not in (None, '') else case_id}/"
                + self.photo_key(item, str(url or raw)),
            }
            try:
                record = row_to_record(row, None, f"{where} photo {i}")
                if refusal is not None:
                    log.warning("source.http.bad_photo_url", id=case_id, photo=i, url=str(raw)[:200], why=refusal)
                    record = record.model_copy(update={"refusal": ("bad_photo_url", refusal)})
                out.append(record)
            except InputError as err:
                log.warning("source.http.bad_record", id=case_id, error=str(err))
        if not photos:
            log.info("source.http.no_photos", id=case_id)
        return out
