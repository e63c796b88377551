"""Galleries as the console sees and changes them, through sync's own code.

Versions are read from each gallery's publish folder (``ROOT/v/<N>/``, immutable, as ``lookout gallery
publish`` writes them). The newest is loaded with ``load_bundle`` under the console's jurisdiction policy, so
a gallery holding someone the policy denies is refused here exactly as on a device or in ``lookout search``.

A change (consent withdrawn for a photo, a person removed, either reinstated) is made as the CLI makes it
(``gallery update --withdraw / --remove / --reinstate``): the source is read again, ``update_gallery`` writes
version N+1 with its delta, signed, and ``publish`` puts it where devices pull from. The bundle carries the
withdrawal ledger, so a withdrawn photo never comes back from an unchanged source in any later version, made here
or on the command line. Who asked and why is in the audit log.
"""

from __future__ import annotations

import csv
import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lookout.console.audit import AuditEntry, AuditLog
from lookout.console.config import GallerySettings
from lookout.errors import InputError, LookoutError
from lookout.face.image_io import decode_image
from lookout.gallery import metadata
from lookout.gallery.format import Manifest
from lookout.gallery.policy import Policy
from lookout.gallery.reader import Gallery, load_bundle
from lookout.gallery.verify import read_manifest
from lookout.log import get_logger
from lookout.sync.build import BuildReport, update_gallery
from lookout.sync.publish import publish
from lookout.sync.records import PhotoRecord
from lookout.sync.sources import open_source

log = get_logger(__name__)

THUMB_SIDE = 320
PEOPLE_PAGE = 24
MAX_PHOTO_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created: str
    persons: int
    photos: int
    delta_from: int | None
    path: Path


@dataclass
class PersonView:
    person_id: str
    name: str
    jurisdiction: str | None
    department: str | None
    attributes: dict[str, Any]
    photos: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Withdrawal:
    kind: str  # photo | person
    item: str
    reason: str
    at: str


class GalleryDesk:
    """Read and change the configured galleries. ``pipeline_factory(embedder)`` gives the face pipeline with the
    embedder a gallery was built with, when a change needs it."""

    def __init__(
        self,
        galleries: dict[str, GallerySettings],
        policy: Policy,
        data_dir: Path,
        audit: AuditLog,
        pipeline_factory: Callable[[str], Any],
    ) -> None:
        self.settings = galleries
        self.policy = policy
        self.data_dir = data_dir
        self.audit = audit
        self.pipeline_factory = pipeline_factory
        self._loaded: dict[str, Gallery] = {}
        self._locks = {name: threading.Lock() for name in galleries}
        self._thumbs: dict[tuple[str, int, str], bytes] = {}

    # -- reading -----------------------------------------------------------------------------

    def _settings(self, gid: str) -> GallerySettings:
        if gid not in self.settings:
            raise InputError(f"gallery {gid!r}", "not configured in this console")
        return self.settings[gid]

    def versions(self, gid: str) -> list[VersionInfo]:
        root = self._settings(gid).published / "v"
        out = []
        for folder in sorted(root.glob("*"), key=lambda p: int(p.name) if p.name.isdigit() else -1, reverse=True):
            if not folder.name.isdigit():
                continue
            try:
                m, _ = read_manifest(folder, self._settings(gid).public_key)
            except LookoutError as err:
                log.warning("console.version_unreadable", gallery=gid, folder=str(folder), error=str(err))
                continue
            out.append(
                VersionInfo(
                    m.version,
                    m.created,
                    m.counts.get("persons", 0),
                    m.counts.get("photos", 0),
                    m.delta.from_version if m.delta else None,
                    folder,
                )
            )
        return out

    def current(self, gid: str) -> Gallery:
        """The newest version, verified and loaded under the console's policy (BundleError if refused)."""
        versions = self.versions(gid)
        if not versions:
            raise InputError(f"gallery {gid!r}", f"no published version in {self._settings(gid).published}")
        newest = versions[0]
        loaded = self._loaded.get(gid)
        if loaded is None or loaded.version != newest.version:
            loaded = load_bundle(newest.path, self._settings(gid).public_key, None, self.policy)
            self._loaded[gid] = loaded
        return loaded

    def manifest(self, gid: str) -> Manifest:
        return self.current(gid).manifest

    def people(
        self, gid: str, query: str = "", offset: int = 0, limit: int = PEOPLE_PAGE
    ) -> tuple[list[PersonView], int]:
        """A page of people (by name, then id) whose name or id contains ``query``, with their photos; and how many
        match. Paged in SQL: a NamUs-sized gallery (14,400 people) is never loaded whole for a page."""
        gallery = self.current(gid)
        like = f"%{query.strip()}%"
        conn = metadata.connect_readonly(gallery.bundle_dir / "gallery.sqlite")
        try:
            where = "WHERE name LIKE ? OR person_id LIKE ?"
            total = int(conn.execute(f"SELECT count(*) FROM persons {where}", (like, like)).fetchone()[0])
            cols = ", ".join(metadata.PERSON_COLUMNS)
            rows = conn.execute(
                f"SELECT {cols} FROM persons {where} ORDER BY lower(name), person_id LIMIT ? OFFSET ?",
                (like, like, limit, offset),
            ).fetchall()
            views = {r[0]: _person_view(r) for r in rows}
            if views:
                marks = ",".join("?" * len(views))
                photo_cols = ", ".join(metadata.PHOTO_COLUMNS)
                for p in conn.execute(
                    f"SELECT {photo_cols} FROM photos WHERE person_id IN ({marks}) ORDER BY label", list(views)
                ):
                    views[p[1]].photos.append(dict(zip(metadata.PHOTO_COLUMNS, p)))
        finally:
            conn.close()
        return list(views.values()), total

    def person(self, gid: str, person_id: str) -> PersonView | None:
        """One person and their enrolled photos, read by key (a review page must not load the whole gallery)."""
        gallery = self.current(gid)
        conn = metadata.connect_readonly(gallery.bundle_dir / "gallery.sqlite")
        try:
            row = metadata.find_person(conn, person_id)
            cols = ", ".join(metadata.PHOTO_COLUMNS)
            photos = conn.execute(
                f"SELECT {cols} FROM photos WHERE person_id = ? ORDER BY label", (person_id,)
            ).fetchall()
        finally:
            conn.close()
        if row is None:
            return None
        view = _person_view(row)
        view.photos = [dict(zip(metadata.PHOTO_COLUMNS, p)) for p in photos]
        return view

    def names(self, gid: str, person_ids: list[str]) -> dict[str, str]:
        """Display names for a page's worth of people (the review queue)."""
        gallery = self.current(gid)
        return {pid: p["name"] for pid in person_ids if (p := gallery.person(pid)) is not None}

    def photo_source(self, gid: str, photo_id: str) -> str | None:
        gallery = self.current(gid)
        conn = metadata.connect_readonly(gallery.bundle_dir / "gallery.sqlite")
        try:
            row = conn.execute("SELECT source FROM photos WHERE photo_id=?", (photo_id,)).fetchone()
        finally:
            conn.close()
        return row[0] if row else None

    def thumbnail(self, gid: str, photo_id: str) -> bytes | None:
        """A small JPEG of an enrolled photo (metadata stripped), read only from the gallery's photo folders."""
        key = (gid, self.current(gid).version, photo_id)  # a photo withdrawn in a newer version is not served
        if key in self._thumbs:
            return self._thumbs[key]
        source = self.photo_source(gid, photo_id)
        if source is None or "://" in source:
            return None
        path = Path(source).resolve()
        roots = [r.resolve() for r in self._settings(gid).photo_roots]
        if not any(path.is_relative_to(r) for r in roots) or not path.is_file():
            return None
        if path.stat().st_size > MAX_PHOTO_BYTES:
            return None
        try:
            image = decode_image(path.read_bytes(), str(path))
        except LookoutError:
            return None
        data = jpeg_thumbnail(image, THUMB_SIDE)
        if len(self._thumbs) > 2000:
            self._thumbs.clear()
        self._thumbs[key] = data
        return data

    def report(self, gid: str) -> dict | None:
        """The newest failure-to-enrol report: the console's own for its versions, else the configured one."""
        own = sorted(
            (self.data_dir / "galleries" / gid).glob("v*.report.json"),
            key=lambda p: int(p.name[1:].split(".")[0]) if p.name[1:].split(".")[0].isdigit() else -1,
        )
        path = own[-1] if own else self._settings(gid).report
        if path is None or not path.is_file():
            return None
        return read_report(path)

    # -- changing ----------------------------------------------------------------------------

    def can_change(self, gid: str) -> str | None:
        """None if changes are possible, else why not (for the page)."""
        s = self._settings(gid)
        if s.key is None:
            return "no signing key configured for this gallery: read-only"
        if not s.source:
            return "no source configured for this gallery: read-only"
        return None

    def withdraw_photo(self, gid: str, photo_id: str, actor: str, reason: str) -> BuildReport:
        person = self._person_of(gid, photo_id)
        report = self._new_version(gid, actor, withdraw=[photo_id])
        self._audit(actor, "gallery.withdraw_photo", gid, f"photo {photo_id}", reason, report, {"person_id": person})
        return report

    def remove_person(self, gid: str, person_id: str, actor: str, reason: str) -> BuildReport:
        report = self._new_version(gid, actor, remove=[person_id])
        self._audit(actor, "gallery.remove_person", gid, f"person {person_id}", reason, report, {})
        return report

    def reinstate(self, gid: str, item: str, actor: str, reason: str) -> BuildReport:
        """Lift a withdrawal or removal (consent given again): the photo or person may be enrolled again."""
        known = {w.item: w for w in self.withdrawals(gid)}
        if item not in known:
            raise InputError(f"{item!r}", f"not withdrawn from gallery {gid!r}")
        report = self._new_version(gid, actor, reinstate=[item])
        self._audit(actor, "gallery.reinstate", gid, f"{known[item].kind} {item}", reason, report, {})
        return report

    def withdrawals(self, gid: str) -> list[Withdrawal]:
        """The withdrawal ledger the current version carries: photos and people that must not come back."""
        gallery = self.current(gid)
        conn = metadata.connect_readonly(gallery.bundle_dir / "gallery.sqlite")
        try:
            ledger = metadata.withdrawn(conn)
        finally:
            conn.close()
        return [  # the ledger's sha256 rows follow the photos and people listed here (reinstated with them)
            Withdrawal(kind, item, why, at) for (kind, item), (why, at) in sorted(ledger.items()) if kind != "sha256"
        ]

    def _person_of(self, gid: str, photo_id: str) -> str:
        gallery = self.current(gid)
        conn = metadata.connect_readonly(gallery.bundle_dir / "gallery.sqlite")
        try:
            row = conn.execute("SELECT person_id FROM photos WHERE photo_id=?", (photo_id,)).fetchone()
        finally:
            conn.close()
        if row is None:
            raise InputError(f"photo {photo_id!r}", f"not enrolled in gallery {gid!r}")
        return str(row[0])

    def _records(self, gid: str, work: Path, withdrawn: set[str]) -> list[PhotoRecord]:
        s = self._settings(gid)
        if not s.source:
            raise InputError(f"gallery {gid!r}", "no source configured for this gallery: read-only")
        records = open_source(s.source, work_dir=work, people=s.people, api_config=s.api_config)
        # Marked as the source itself would mark them, so a withdrawn photo is never enrolled again, even when its
        # file or path changed (update_gallery's ledger alone removes it only from the previous version).
        return [r.model_copy(update={"use_for_recognition": False}) if r.key in withdrawn else r for r in records]

    def _new_version(
        self,
        gid: str,
        actor: str,
        withdraw: list[str] | None = None,
        remove: list[str] | None = None,
        reinstate: list[str] | None = None,
    ) -> BuildReport:
        why_not = self.can_change(gid)
        if why_not:
            raise InputError(f"gallery {gid!r}", why_not)
        s = self._settings(gid)
        with self._locks[gid]:
            base = self.versions(gid)[0]
            folder = self.data_dir / "galleries" / gid
            work = folder / "work"
            out = folder / f"v{base.version + 1}"
            if out.exists():  # a half-made earlier attempt (its publish never happened): make it again
                shutil.rmtree(out)
            withdrawn = {w.item for w in self.withdrawals(gid) if w.kind == "photo"} | set(withdraw or ())
            withdrawn -= set(reinstate or ())
            report = update_gallery(
                base.path,
                self._records(gid, work, withdrawn),
                out,
                s.key,
                self.pipeline_factory(self.current(gid).model_name),
                self.policy,
                public_key=s.public_key,
                remove=remove or (),
                withdraw=withdraw or (),
                reinstate=reinstate or (),
                jurisdiction=s.jurisdiction,
                work_dir=work,
                report_path=folder / f"v{base.version + 1}.report.json",
                progress=False,
            )
            publish(out, s.published, s.public_key)
            self._loaded.pop(gid, None)
        log.info("console.gallery_changed", gallery=gid, by=actor, version=report.manifest.version, **report.changes)
        return report

    def _audit(
        self, actor: str, action: str, gid: str, target: str, reason: str, report: BuildReport, extra: dict
    ) -> None:
        m = report.manifest
        detail = {"gallery": gid, "version": m.version, "from_version": m.delta.from_version if m.delta else None}
        detail.update(report.changes)
        detail.update(extra)
        self.audit.record(AuditEntry(time.time(), actor, action, f"{gid}: {target}", reason, detail))

    def close(self) -> None:
        """Nothing held open: bundles are read per request."""


def _person_view(row: tuple) -> PersonView:
    try:
        attributes = json.loads(row[4]) if row[4] else {}
    except ValueError:
        attributes = {}
    return PersonView(row[0], row[1], row[2], row[3], attributes if isinstance(attributes, dict) else {})


def jpeg_thumbnail(image: np.ndarray, side: int, quality: int = 85) -> bytes:
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError("thumbnail", "JPEG encoding failed")
    return buf.tobytes()


def read_report(path: Path) -> dict | None:
    """A failure-to-enrol report (.json with summary and photos, or .csv) as {"summary_line", "rows"}."""
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            rows, line = doc.get("photos", []), doc.get("summary_line", "")
        else:
            rows, line = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines())), ""
    except (OSError, ValueError) as err:
        log.warning("console.report_unreadable", path=str(path), error=str(err))
        return None
    failed = [r for r in rows if r.get("status") != "enrolled"]
    return {"path": str(path), "summary_line": line, "rows": failed, "total": len(rows)}
