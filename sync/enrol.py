"""Per-photo enrolment: policy, fetch, decode, detect, choose the face, quality gates, align, embed.

The policy is checked first: a photo of a record in a denied jurisdiction, with no
jurisdiction at all (unknown: denied, fail closed), or marked
``use_for_recognition: false``, is never downloaded, decoded or embedded
(``Enroller.embedded`` counts the embeddings actually computed).

Results are cached in the work folder (``enrol-cache.sqlite``, keyed by the photo's
content (SHA-256 of its bytes), box, model and rules) so an interrupted build resumes
without embedding finished photos again; the policy, consent and withdrawals are
checked every time, before the cache; download failures are not cached.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lookout.digest import sha256_bytes
from lookout.errors import InputError
from lookout.face.image_io import MAX_PIXELS, decode_image, read_image_file
from lookout.face.pipeline import FacePipeline
from lookout.face.quality import POSE_PITCH, POSE_YAW, TOO_BLURRED, TOO_SMALL
from lookout.face.subject import SubjectRule
from lookout.gallery.policy import Policy
from lookout.gallery.purpose import DEFAULT_PURPOSE
from lookout.http_client import FetchError, HttpClient
from lookout.log import get_logger
from lookout.sync.records import PhotoRecord
from lookout.sync.report import NO_JURISDICTION

log = get_logger(__name__)

ENROLLED, FAILED, EXCLUDED = "enrolled", "failed", "excluded"
UNREADABLE = "unreadable"
DOWNLOAD_FAILED = "download_failed"
POSE = "pose"
DUPLICATE = "duplicate"
POLICY_EXCLUDED = "policy_excluded"
NOT_FOR_RECOGNITION = "not_for_recognition"
WITHDRAWN = "withdrawn"  # an operator withdrew it (or these very bytes, under any file name or id)
QUALITY_REASONS = {TOO_SMALL: TOO_SMALL, TOO_BLURRED: TOO_BLURRED, POSE_YAW: POSE, POSE_PITCH: POSE}
JURISDICTION_FIX = (
    "give the record a jurisdiction (e.g. US-CA) or declare its whole source's with "
    "`lookout gallery build/update --jurisdiction CODE` (or `jurisdiction:` in an API source's config)"
)


def no_jurisdiction_detail(policy_reason: str) -> str:
    """The report's detail for a record refused because it has no jurisdiction: why, and exactly how to fix it."""
    why = policy_reason.removeprefix(f"{NO_JURISDICTION}: ")
    return f"{NO_JURISDICTION}: neither the record nor its source declares one, and {why}; fix: {JURISDICTION_FIX}"


@dataclass
class PhotoResult:
    photo_id: str
    person_id: str
    source: str
    status: str
    reason: str | None = None
    detail: str = ""
    embedding: np.ndarray | None = field(default=None, repr=False)
    box: list[float] | None = None
    quality: dict | None = None
    sha256: str | None = None
    near_duplicate_of: str | None = None


class PhotoFetcher:
    """Bytes of a photo from a path or an http(s) URL; downloads are kept in ``cache_dir``."""

    def __init__(self, client: HttpClient | None = None, cache_dir: Path | None = None) -> None:
        self.client = client or HttpClient(min_interval_s=0.0, retries=3, backoff_s=0.5)
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def fetch(self, source: str) -> bytes:
        if source.startswith(("http://", "https://")):
            cached = self.cache_dir / hashlib.sha256(source.encode()).hexdigest() if self.cache_dir else None
            if cached is not None and cached.is_file():
                return cached.read_bytes()
            data = self.client.get(source, accept="image/*")
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(".part")
                tmp.write_bytes(data)
                tmp.replace(cached)
            return data
        return read_image_file(source)  # regular files only, size-capped: never /dev/zero or a pipe


class EnrolCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path)
        self.conn.execute("CREATE TABLE IF NOT EXISTS results(key TEXT PRIMARY KEY, doc TEXT NOT NULL, vector BLOB)")

    @staticmethod
    def key(settings: str, content_sha256: str, box: tuple[float, float, float, float] | None) -> str:
        """One result per photo content (its bytes' SHA-256, whatever its path, URL or id), box and settings
        (model digest, enrolment rule, quality gates): a cached result can never stand for other bytes."""
        return sha256_bytes(json.dumps([settings, content_sha256, box]).encode())

    def get(self, key: str) -> PhotoResult | None:
        row = self.conn.execute("SELECT doc, vector FROM results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        doc = json.loads(row[0])
        vector = np.frombuffer(row[1], np.float32).copy() if row[1] is not None else None
        return PhotoResult(**doc, embedding=vector)

    def put(self, key: str, result: PhotoResult) -> None:
        doc = {
            k: getattr(result, k)
            for k in ("photo_id", "person_id", "source", "status", "reason", "detail", "box", "quality", "sha256")
        }
        blob = result.embedding.astype(np.float32).tobytes() if result.embedding is not None else None
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO results VALUES (?,?,?)", (key, json.dumps(doc), blob))

    def close(self) -> None:
        self.conn.close()


class Enroller:
    def __init__(
        self,
        pipeline: FacePipeline,
        policy: Policy,
        purpose: str = DEFAULT_PURPOSE,
        fetcher: PhotoFetcher | None = None,
        cache: EnrolCache | None = None,
        rule: SubjectRule | None = None,
        max_pixels: int = MAX_PIXELS,
        withdrawn_sha256: dict[str, str] | None = None,
        withdrawn_ids: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        """``rule``: which face of a photo is its subject and which quality reasons refuse it (default:
        the dominant face of several, only too-small faces refused; lookout.face.subject).
        ``withdrawn_sha256``: SHA-256 of withdrawn photos' bytes -> why; a photo with those bytes is never enrolled,
        whatever its file name, photo id or person id (a withdrawal follows the photo, not its path)."""
        self.pipeline = pipeline
        self.rule = rule or SubjectRule()
        self.max_pixels = max_pixels
        self.policy = policy
        self.purpose = purpose
        self.fetcher = fetcher or PhotoFetcher()
        self.cache = cache
        self.embedded = 0  # embeddings computed by this enroller (not from the cache)
        self.withdrawn_sha256 = withdrawn_sha256 or {}
        self.withdrawn_ids = withdrawn_ids  # photo ids an operator withdrew (reported `withdrawn`, not the record's)

    def enrol(self, rec: PhotoRecord) -> PhotoResult:
        base: dict[str, Any] = dict(photo_id=rec.key, person_id=rec.person_id, source=rec.photo)
        problem = rec.problem()  # an id no event can carry, a record contradicting an earlier one
        if problem is not None:
            return PhotoResult(**base, status=FAILED, reason=problem[0], detail=problem[1])
        decision = self.policy.decide(rec.jurisdiction, self.purpose, rec.department)
        if not decision.allowed:
            detail = no_jurisdiction_detail(decision.reason) if decision.unknown else decision.reason
            return PhotoResult(**base, status=EXCLUDED, reason=POLICY_EXCLUDED, detail=detail)
        if rec.key in self.withdrawn_ids:
            why = "consent withdrawn by an operator (the gallery's withdrawal ledger; --reinstate lifts it)"
            return PhotoResult(**base, status=EXCLUDED, reason=WITHDRAWN, detail=why)
        if not rec.use_for_recognition:
            return PhotoResult(
                **base, status=EXCLUDED, reason=NOT_FOR_RECOGNITION, detail="record says use_for_recognition: false"
            )
        try:
            data = self.fetcher.fetch(rec.photo)
        except FetchError as err:
            return PhotoResult(**base, status=FAILED, reason=DOWNLOAD_FAILED, detail=err.reason)
        except InputError as err:
            return PhotoResult(**base, status=FAILED, reason=UNREADABLE, detail=err.reason)
        digest = sha256_bytes(data)
        if digest in self.withdrawn_sha256:  # never decoded nor embedded
            why = self.withdrawn_sha256[digest]
            detail = f"the same photo (sha256 {digest[:16]}...) was withdrawn: {why}"
            return PhotoResult(**base, status=EXCLUDED, reason=WITHDRAWN, detail=detail, sha256=digest)
        if self.cache is None:
            return self._enrol(rec, base, data, digest)
        key = EnrolCache.key(self._settings(), digest, rec.box)
        if (hit := self.cache.get(key)) is not None:
            return replace(hit, **base)  # the same bytes, under this record's ids
        result = self._enrol(rec, base, data, digest)
        self.cache.put(key, result)
        return result

    def _settings(self) -> str:
        """What makes a cached result valid: the model, the enrolment rule and the quality gates."""
        return json.dumps(
            [self.pipeline.embedder.digest, asdict(self.rule), asdict(self.pipeline.quality_config)], sort_keys=True
        )

    def _enrol(self, rec: PhotoRecord, base: dict[str, Any], data: bytes, digest: str) -> PhotoResult:
        try:
            image = decode_image(data, rec.photo, self.max_pixels)
        except InputError as err:
            return PhotoResult(**base, status=FAILED, reason=UNREADABLE, detail=err.reason, sha256=digest)
        subject = self.pipeline.subject(image, rec.box, self.rule)
        if subject.face is None or subject.chip is None or subject.quality is None:
            return PhotoResult(**base, status=FAILED, reason=subject.reason, detail=subject.detail, sha256=digest)
        face, quality = subject.face, subject.quality
        box = [round(float(v), 1) for v in face.box]
        refused = self.rule.refusals(quality.reasons)
        if refused:
            reason = QUALITY_REASONS.get(refused[0], refused[0])
            return PhotoResult(
                **base,
                status=FAILED,
                reason=reason,
                detail=",".join(quality.reasons),
                box=box,
                quality=quality.to_dict(),
                sha256=digest,
            )
        vector = self.pipeline.embed(subject.chip[None])[0]
        self.embedded += 1
        return PhotoResult(**base, status=ENROLLED, embedding=vector, box=box, quality=quality.to_dict(), sha256=digest)


def mark_duplicates(results: list[PhotoResult], near: float = 0.97) -> None:
    """Within each person: byte-identical photos become ``duplicate`` failures (enrolled once);
    photos whose embeddings are at least ``near`` cosine apart are noted as near-duplicates."""
    by_person: dict[str, list[PhotoResult]] = {}
    for r in results:
        if r.status == ENROLLED:
            by_person.setdefault(r.person_id, []).append(r)
    for items in by_person.values():
        seen: dict[str, str] = {}
        kept: list[PhotoResult] = []
        for r in items:
            if r.sha256 is None or r.embedding is None:
                continue  # enrolled photos always have both
            if r.sha256 in seen:
                r.status, r.reason, r.detail = FAILED, DUPLICATE, f"same file as {seen[r.sha256]}"
                r.embedding = None
                continue
            seen[r.sha256] = r.photo_id
            for other in kept:
                if other.embedding is not None and float(np.dot(r.embedding, other.embedding)) >= near:
                    r.near_duplicate_of = other.photo_id
                    break
            kept.append(r)
