"""Search by photo from the console: the same ``search_image`` as ``lookout search``, under the same policy.

An upload is decoded once (after the checks in ``uploads``) and kept in memory only, for the session that sent
it, for a few minutes, so the user can draw a box and search again without sending it twice. It is never written
to disk. Before anything is embedded the console checks that its policy allows recognition for the gallery's
purpose where its users are (``location``, when configured); the gallery itself is loaded under the same policy, so a gallery
holding a denied person is never searched. Every search, refused or not, goes to the audit log.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookout.console.audit import AuditEntry, AuditLog
from lookout.console.galleries import GalleryDesk, jpeg_thumbnail
from lookout.errors import InputError
from lookout.gallery.policy import Policy
from lookout.gallery.reader import Gallery
from lookout.gallery.search import FaceResult, search_image
from lookout.log import get_logger

log = get_logger(__name__)

UPLOAD_TTL_S = 900.0
MAX_UPLOADS = 64
DISPLAY_SIDE = 1280


@dataclass
class Upload:
    upload_id: str
    owner: str  # the session's token digest
    name: str
    image: np.ndarray
    display_jpeg: bytes
    scale: float  # display pixels per image pixel
    created: float


@dataclass
class SearchOutcome:
    gallery_id: str
    version: int
    threshold: float
    persons: int
    photos: int
    faces: list[FaceResult]
    box: tuple[float, float, float, float] | None
    meaning: str
    basis: dict[str, Any] = field(default_factory=dict)


class UploadStore:
    """Decoded uploads in memory, per session, expiring."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._items: dict[str, Upload] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def put(self, owner: str, name: str, image: np.ndarray) -> Upload:
        h, w = image.shape[:2]
        scale = min(1.0, DISPLAY_SIDE / max(h, w))
        upload = Upload(
            secrets.token_urlsafe(16), owner, name, image, jpeg_thumbnail(image, DISPLAY_SIDE, 90), scale, self.clock()
        )
        with self._lock:
            self._expire()
            while len(self._items) >= MAX_UPLOADS:
                self._items.pop(next(iter(self._items)))
            self._items[upload.upload_id] = upload
        return upload

    def get(self, owner: str, upload_id: str) -> Upload:
        with self._lock:
            self._expire()
            upload = self._items.get(upload_id)
        if upload is None or not secrets.compare_digest(upload.owner, owner):
            raise InputError("photo", "this upload has expired or is not yours: upload the photo again")
        return upload

    def drop_owner(self, owner: str) -> None:
        with self._lock:
            for key in [k for k, u in self._items.items() if u.owner == owner]:
                del self._items[key]

    def _expire(self) -> None:
        cutoff = self.clock() - UPLOAD_TTL_S
        for key in [k for k, u in self._items.items() if u.created < cutoff]:
            del self._items[key]


def threshold_meaning(gallery: Gallery) -> str:
    """What the threshold means at this gallery's size, in words, from the figures the bundle carries."""
    m = gallery.manifest
    basis = m.threshold.basis or {}
    n = gallery.count_persons
    fpir = basis.get("predicted_fpir", basis.get("fpir"))
    target = basis.get("target_fpir")
    parts = [
        f"A score at or above {m.threshold.value:.3f} marks a candidate worth a careful look, not an identification."
    ]
    if isinstance(fpir, (int, float)):
        parts.append(
            f"With {n:,} people enrolled, a photo of someone who is not in the gallery clears it against somebody "
            f"in about {float(fpir):.1%} of searches (predicted when the gallery was built"
            + (f", target {float(target):.1%}" if isinstance(target, (int, float)) else "")
            + ")."
        )
    else:
        parts.append(
            f"This threshold was not calibrated for a gallery of {n:,} people: the more people enrolled, the more "
            "often a stranger clears it by chance. Treat every candidate as a lead to check, never as a match."
        )
    parts.append("A person must compare the photos before anyone acts.")
    return " ".join(parts)


class SearchQuota:
    """At most ``per_hour`` searches per account in any sliding hour (kept in memory, per console process)."""

    def __init__(self, per_hour: int, clock: Callable[[], float] = time.time) -> None:
        self.per_hour = per_hour
        self.clock = clock
        self._times: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def take(self, actor: str) -> float:
        """0 when a search may go ahead (and counts it), else the seconds until one may."""
        now = self.clock()
        with self._lock:
            recent = [t for t in self._times.get(actor, []) if t > now - 3600]
            if len(recent) >= self.per_hour:
                self._times[actor] = recent
                return recent[0] + 3600 - now
            recent.append(now)
            self._times[actor] = recent
            return 0.0


class SearchDesk:
    def __init__(
        self,
        galleries: GalleryDesk,
        policy: Policy,
        location: str | None,
        purpose: str | None,
        audit: AuditLog,
        pipeline: Callable[[str], Any],
        pipeline_lock: threading.Lock,
        per_user_per_hour: int = 120,
    ) -> None:
        self.galleries = galleries
        self.policy = policy
        self.location = location
        self.purpose = purpose
        self.audit = audit
        self.pipeline = pipeline
        self.pipeline_lock = pipeline_lock
        self.uploads = UploadStore()
        self.quota = SearchQuota(per_user_per_hour)

    def _refuse(self, actor: str, gid: str, why: str, detail: dict) -> InputError:
        self.audit.record(AuditEntry(time.time(), actor, "search.denied", f"gallery {gid}", why, detail))
        log.warning("console.search_denied", by=actor, gallery=gid, why=why)
        return InputError(f"search in gallery {gid!r}", why)

    def search(
        self,
        actor: str,
        gid: str,
        upload: Upload,
        box: tuple[float, float, float, float] | None,
        top: int = 5,
        taken_in: str | None = None,
    ) -> SearchOutcome:
        """Search ``upload`` in gallery ``gid``. ``taken_in``: where the photo was taken (default: the console's
        ``location``): the face in it is someone there, so the policy decides on it before any face is found."""
        taken_in = (taken_in or "").strip()[:100] or self.location
        detail: dict[str, Any] = {"upload": upload.name[:200], "box": list(box) if box else None, "taken_in": taken_in}
        try:
            gallery = self.galleries.current(gid)
        except InputError:
            raise
        except Exception as err:  # BundleError (policy, signature, files) and the like: no search at all
            raise self._refuse(actor, gid, f"the gallery cannot be used: {err}", detail) from None
        wait = self.quota.take(actor)
        if wait > 0:
            raise self._refuse(
                actor,
                gid,
                f"{self.quota.per_hour} searches in the last hour is this console's limit per account: "
                f"try again in {int(wait // 60) + 1} min",
                detail,
            )
        purpose = self.purpose or gallery.purpose
        # The photo's subject is someone where the photo was taken: the policy decides on that place before anything
        # is detected or embedded, and an unknown place is denied (attack A40). The gallery's people are checked when
        # the gallery is loaded (and withheld from results if denied); a configured console `location` must be
        # allowed too.
        where = self.policy.decide(self.location, purpose) if self.location else None
        if where is not None and not where.allowed:
            raise self._refuse(
                actor, gid, f"face recognition is not allowed where this console is: {where.reason}", detail
            )
        if not taken_in:
            raise self._refuse(
                actor,
                gid,
                "say where the photo was taken (an ISO 3166-2 code such as US-CA): face recognition is not allowed "
                "everywhere, and an unknown place is denied",
                detail,
            )
        taken = self.policy.decide(taken_in, purpose)
        if not taken.allowed:
            raise self._refuse(
                actor, gid, f"face recognition is not allowed where the photo was taken: {taken.reason}", detail
            )
        with self.pipeline_lock:
            results = search_image(upload.image, self.pipeline(gallery.model_name), gallery, box=box, top=top)
        detail.update(
            {
                "version": gallery.version,
                "threshold": gallery.threshold,
                "faces": len(results),
                "candidates": [
                    [
                        {"person_id": c.person_id, "score": round(c.score, 4), "above": c.score >= r.threshold}
                        for c in r.candidates
                    ]
                    for r in results
                ],
            }
        )
        self.audit.record(AuditEntry(time.time(), actor, "search", f"gallery {gid}", None, detail))
        log.info("console.search", by=actor, gallery=gid, faces=len(results))
        return SearchOutcome(
            gid,
            gallery.version,
            gallery.threshold,
            gallery.count_persons,
            gallery.count_photos,
            results,
            box,
            threshold_meaning(gallery),
            dict(gallery.manifest.threshold.basis or {}),
        )
