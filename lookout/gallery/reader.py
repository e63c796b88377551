"""Reading a verified gallery: who is nearest to a face, and who a person is.

``GalleryReader`` is the one interface the device, search, evaluation and the
relay's alert formatting code against; ``Gallery`` (made by ``load_bundle`` from a
bundle folder that passed every check in ``verify``) is its implementation.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lookout.gallery import metadata
from lookout.gallery.format import GALLERY, INDEX, BundleError, Manifest, load_index
from lookout.gallery.index import VectorIndex
from lookout.gallery.keys import PublicKeySource
from lookout.gallery.policy import Policy
from lookout.gallery.verify import verify_bundle
from lookout.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Candidate:
    person_id: str
    name: str
    score: float  # cosine similarity, best over the person's photos
    photo_id: str


class GalleryReader(Protocol):
    """What every reader of a gallery needs: identity, threshold, search and person lookup."""

    @property
    def manifest(self) -> Manifest: ...
    @property
    def version(self) -> int: ...
    @property
    def policy_version(self) -> str: ...
    @property
    def model_name(self) -> str: ...
    @property
    def model_digest(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    @property
    def dim(self) -> int: ...
    @property
    def count_persons(self) -> int: ...

    def search(self, vectors: np.ndarray, k: int = 5) -> list[list[Candidate]]: ...

    def person(self, person_id: str) -> dict[str, Any] | None: ...

    def has_photo(self, photo_id: str) -> bool: ...

    def photo_sha256(self, photo_ids: tuple[str, ...]) -> tuple[str, ...]: ...

    def photo_still_enrolled(self, person_id: str, photo_id: str, sha256: str | None) -> bool: ...

    def enrolled(self) -> tuple[list[str], np.ndarray]:
        """(the person id of each enrolled photo, their vectors (M, D)), in label order."""
        ...


# Up to this many photos a gallery is searched exactly (one matrix product over a copy of the
# vectors): on watchlist-like data HNSW needs a large ef to find a mate at threshold similarity
# with recall 0.999, and at this size exact search costs about as much (docs/gallery.md).
EXACT_SEARCH_MAX = 50_000


class Gallery:
    """A loaded, verified bundle. Thread-safe for concurrent searches."""

    def __init__(
        self,
        bundle_dir: Path,
        manifest: Manifest,
        index: VectorIndex,
        persons: dict[str, dict[str, Any]],
        photos: list[dict[str, Any]],
        policy: Policy,
    ) -> None:
        """Kept compactly, since a device holds it all the time (25,000 photos: about 20 MB, against 65 MB as
        Python objects with the HNSW graph; docs/benchmarks.md): the photos as sorted label, photo id and
        owner arrays; in exact mode (up to ``EXACT_SEARCH_MAX``) the vectors as one matrix and the HNSW
        graph not at all (``index`` reloads it from the bundle if someone asks)."""
        self.bundle_dir = Path(bundle_dir)
        self.manifest = manifest
        self._persons = persons
        ordered = sorted(photos, key=lambda p: int(p["label"]))
        self._labels = np.fromiter((int(p["label"]) for p in ordered), np.int64, len(ordered))
        self._photo_ids = [str(p["photo_id"]) for p in ordered]
        self._photo_set: frozenset[str] | None = None  # made on first use (has_photo)
        self._contents: frozenset[tuple[str, str]] | None = None  # (person, photo SHA-256), on first use
        self._withdrawn_photos: frozenset[str] | None = None  # the withdrawal ledger's photo ids, on first use
        self._person_ids = sorted(persons)
        position = {person_id: i for i, person_id in enumerate(self._person_ids)}
        self._owners = np.fromiter((position[p["person_id"]] for p in ordered), np.int32, len(ordered))
        counts = np.bincount(self._owners, minlength=len(self._person_ids)) if len(ordered) else np.zeros(1, int)
        self._max_photos = max(int(counts.max(initial=1)), 1)
        self.policy = policy
        self._exact: np.ndarray | None = None  # (photos, dim) in label order, exact mode only
        self._index: VectorIndex | None = index
        if len(ordered) <= EXACT_SEARCH_MAX:
            self._exact = _vectors(index, self._labels)
            self._index = None

    @property
    def index(self) -> VectorIndex:
        """The bundle's HNSW index (reloaded from the bundle where exact search made it unnecessary)."""
        if self._index is None:
            self._index = load_index(self.bundle_dir, self.manifest)
        return self._index

    def _positions(self, labels: np.ndarray) -> np.ndarray:
        """Row of each label in the photo arrays; -1 for a label no photo has."""
        rows = np.searchsorted(self._labels, labels)
        rows = np.minimum(rows, max(len(self._labels) - 1, 0))
        found = (self._labels[rows] == labels) if len(self._labels) else np.zeros(labels.shape, bool)
        return np.where(found, rows, -1)

    def _nearest(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows in the photo arrays, cosine scores), best first; rows -1 where a label has no photo."""
        if self._exact is None:
            labels, scores = self.index.search(vectors, k)
            return self._positions(labels), scores
        matrix = self._exact
        k = min(k, len(matrix))
        if k == 0:
            return np.zeros((len(vectors), 0), np.int64), np.zeros((len(vectors), 0), np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        scores = (vectors / np.maximum(norms, 1e-12)) @ matrix.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, 1)
        order = np.argsort(-top_scores, axis=1)
        return np.take_along_axis(top, order, 1), np.take_along_axis(top_scores, order, 1)

    # -- identity ------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def policy_version(self) -> str:
        return self.manifest.policy.version

    @property
    def model_name(self) -> str:
        return self.manifest.model.name

    @property
    def model_digest(self) -> str:
        return self.manifest.model.digest

    @property
    def threshold(self) -> float:
        return self.manifest.threshold.value

    @property
    def dim(self) -> int:
        return self.manifest.model.dim

    @property
    def purpose(self) -> str:
        return self.manifest.purpose

    @property
    def count_persons(self) -> int:
        return len(self._persons)

    @property
    def count_photos(self) -> int:
        return len(self._labels)

    def set_policy(self, policy: Policy) -> None:
        """Change the policy searches are checked against (e.g. the device's policy was updated)."""
        self.policy = policy

    # -- lookups -------------------------------------------------------------------
    def person(self, person_id: str) -> dict[str, Any] | None:
        found = self._persons.get(person_id)
        return dict(found) if found else None

    def has_photo(self, photo_id: str) -> bool:
        """Whether ``photo_id`` is enrolled (a withdrawn photo is not): the device drops queued events resting on one."""
        if self._photo_set is None:
            self._photo_set = frozenset(self._photo_ids)
        return photo_id in self._photo_set

    def photo_sha256(self, photo_ids: tuple[str, ...]) -> tuple[str, ...]:
        """The content digest of each of ``photo_ids`` ("" where unknown), read from the bundle's metadata on
        demand (a device keeps no digests in memory; it asks for a match's few photos)."""
        found = self._read(
            f"SELECT photo_id, sha256 FROM photos WHERE photo_id IN ({','.join('?' * len(photo_ids))})", photo_ids
        )
        digests = {str(r[0]): str(r[1] or "") for r in found}
        return tuple(digests.get(p, "") for p in photo_ids)

    def photo_still_enrolled(self, person_id: str, photo_id: str, sha256: str | None) -> bool:
        """Whether a photo a match rested on still counts in this gallery: enrolled under its id, or (renamed or
        moved in the source: A44) the same content enrolled for the same person, unless the withdrawal ledger
        names it. A photo whose content is gone (withdrawn in the source, replaced) does not."""
        if self.has_photo(photo_id):
            return True
        if self._withdrawn_photos is None:
            self._withdrawn_photos = frozenset(
                str(r[1]) for r in self._read("SELECT kind, id FROM withdrawn") if r[0] == "photo"
            )
        if photo_id in self._withdrawn_photos or not sha256:
            return False
        if self._contents is None:
            self._contents = frozenset(
                (str(r[0]), str(r[1])) for r in self._read("SELECT person_id, sha256 FROM photos") if r[1]
            )
        return (person_id, sha256) in self._contents

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows from the bundle's metadata; none when it cannot be read (the callers then fail closed)."""
        try:
            conn = metadata.connect_readonly(self.bundle_dir / GALLERY)
            try:
                return [tuple(r) for r in conn.execute(sql, params).fetchall()]
            finally:
                conn.close()
        except sqlite3.Error:
            return []

    def persons(self) -> list[dict[str, Any]]:
        return [dict(p) for p in self._persons.values()]

    def photos_by_label(self) -> dict[int, tuple[str, str]]:
        """Every enrolled photo's index label -> (photo id, person id): built on request (audits), not kept."""
        return {
            int(label): (photo_id, self._person_ids[owner])
            for label, photo_id, owner in zip(self._labels, self._photo_ids, self._owners)
        }

    def enrolled(self) -> tuple[list[str], np.ndarray]:
        owners = [self._person_ids[i] for i in self._owners]
        if self._exact is not None:
            return owners, self._exact.copy()
        return owners, self.index.get(self._labels) if len(self._labels) else np.zeros((0, self.dim), np.float32)

    def search(self, vectors: np.ndarray, k: int = 5) -> list[list[Candidate]]:
        """Top ``k`` people per query vector, best first; a person's score is their best photo's.

        Defence in depth: if any candidate is from a jurisdiction the policy in
        force denies, that face gets no candidates at all and a policy event is logged.
        """
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        if vectors.shape[1] != self.dim:
            raise ValueError(f"query vectors are {vectors.shape[1]}-d, the gallery is {self.dim}-d")
        k_photos = min(self.count_photos, max(k * self._max_photos, k + 10))
        rows, scores = self._nearest(vectors, k_photos)
        results: list[list[Candidate]] = []
        for row_rows, row_scores in zip(rows, scores):
            best: dict[str, Candidate] = {}
            for row, score in zip(row_rows, row_scores):
                if row < 0:
                    continue
                person_id = self._person_ids[self._owners[row]]
                if person_id not in best:  # results come best first
                    name = self._persons[person_id]["name"]
                    best[person_id] = Candidate(person_id, name, float(score), self._photo_ids[row])
            candidates = list(best.values())[:k]
            blocked = [c for c in candidates if not self._allowed(c.person_id)]
            if blocked:
                person = self._persons[blocked[0].person_id]
                log.warning(
                    "search.policy_blocked",
                    person_id=blocked[0].person_id,
                    jurisdiction=person.get("jurisdiction"),
                    policy=self.policy.version,
                    why="a candidate is from a jurisdiction the policy denies: result withheld",
                )
                candidates = []
            results.append(candidates)
        return results

    def _allowed(self, person_id: str) -> bool:
        person = self._persons[person_id]
        return self.policy.allows(person.get("jurisdiction"), self.purpose, person.get("department"))


def _vectors(index: VectorIndex, labels: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """The vectors of ``labels`` as one float32 matrix, fetched a chunk at a time: hnswlib hands them out
    through Python lists (25,000 256-d vectors at once: about 300 MB for a moment, against 26 MB kept)."""
    out = np.empty((len(labels), index.dim), np.float32)
    for start in range(0, len(labels), chunk):
        out[start : start + chunk] = index.get(labels[start : start + chunk])
    return out


def load_bundle(
    bundle_dir: Path,
    public_key: PublicKeySource | None,
    expected_model_digest: str | None,
    policy: Policy | None,
    location: str | None = None,
    *,
    allow_unsigned: bool = False,
    gallery_id: str | None = None,
    purpose: str | None = None,
) -> Gallery:
    """Verify a bundle folder (files, signature, model, policy) and load it for searching.

    ``public_key``: PEM path or bytes. None refuses the bundle (``unverified``: fail closed, the policy check would
    trust jurisdictions anyone can edit) unless ``allow_unsigned`` (tests; the signature check is skipped, with a
    warning).
    ``expected_model_digest``: the device's embedder digest (None skips the check).
    ``policy``: the device's policy (None: the built-in one; the bundle's own applies too). ``location``: the device's
    jurisdiction; refused if the policy denies recognition there. ``gallery_id`` / ``purpose``: the gallery and purpose
    the reader is for; a bundle of another (or, with ``gallery_id``, one built before gallery ids) is refused.
    """
    bundle_dir = Path(bundle_dir)
    t0 = time.perf_counter()
    manifest, active = verify_bundle(
        bundle_dir,
        public_key,
        expected_model_digest,
        policy,
        location,
        allow_unsigned=allow_unsigned,
        gallery_id=gallery_id,
        purpose=purpose,
    )
    try:
        index = load_index(bundle_dir, manifest)
    except (RuntimeError, ValueError, MemoryError) as err:
        raise BundleError(bundle_dir, "bad_index", f"{INDEX} cannot be loaded: {err}") from None
    conn = metadata.connect_readonly(bundle_dir / GALLERY)
    try:
        persons, photos = metadata.persons(conn), metadata.photo_owners(conn)
    except sqlite3.DatabaseError as err:
        raise BundleError(bundle_dir, "bad_metadata", f"{GALLERY}: {err}") from None
    finally:
        conn.close()
    if (
        index.count != len(photos)
        or len(photos) != manifest.counts.get("photos")
        or len(persons) != manifest.counts.get("persons")
    ):
        raise BundleError(
            bundle_dir,
            "inconsistent",
            f"index holds {index.count} live vectors, metadata {len(photos)} photos / {len(persons)} persons, "
            f"manifest {manifest.counts}",
        )
    gallery = Gallery(bundle_dir, manifest, index, persons, photos, active)
    log.info(
        "bundle.loaded",
        bundle=str(bundle_dir),
        version=manifest.version,
        persons=len(persons),
        photos=len(photos),
        model=manifest.model.name,
        policy=active.version,
        threshold=manifest.threshold.value,
        ms=round((time.perf_counter() - t0) * 1000, 1),
    )
    return gallery
