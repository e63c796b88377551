"""Index bundles: what a device searches, signed by whoever built it.

A bundle is a folder::

    manifest.json    what is in the bundle (below), signed
    manifest.sig     base64 Ed25519 signature over the exact bytes of manifest.json
    index.bin        hnswlib index (inner product over unit embeddings)
    gallery.sqlite   persons, photos, labels (see lookout.gallery.metadata)
    policy.json      the jurisdiction policy the gallery was built under
    delta/           (updates only) what changed since the previous version:
      delta.json     persons and photos added/removed, index labels removed
      vectors.npy    embeddings of the added photos

The manifest gives the bundle version, creation time, purpose, model name and
digest, embedding dimension, counts, the default threshold (and the figures it
was chosen from), HNSW parameters (M, ef_construction, ef: hnswlib does not
save ef), the policy version and the SHA-256 and size of every file.

``load_bundle`` is the device-side reader: it checks files, signature, model
and policy, and returns a ``Gallery`` to search. Any failure raises
``BundleError`` with a reason code and a sentence saying what was wrong.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from lookout.gallery import metadata
from lookout.gallery.index import IndexParams, VectorIndex
from lookout.gallery.keys import key_id, load_private_key, load_public_key, sign, verify
from lookout.gallery.policy import Policy
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lookout import __version__
from lookout.digest import sha256_bytes, sha256_file
from lookout.errors import LookoutError
from lookout.log import get_logger

log = get_logger(__name__)

FORMAT = "lookout-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
INDEX = "index.bin"
GALLERY = "gallery.sqlite"
POLICY = "policy.json"
DELTA_DIR = "delta"
DELTA_DOC = "delta/delta.json"
DELTA_VECTORS = "delta/vectors.npy"


class BundleError(LookoutError):
    """A bundle that must not be used. ``reason`` is a short code, ``str(err)`` says what and where."""

    def __init__(self, where: str | Path, reason: str, detail: str) -> None:
        super().__init__(f"{where}: bundle rejected ({reason}): {detail}")
        self.where = str(where)
        self.reason = reason
        self.detail = detail


# -- manifest ------------------------------------------------------------------------------------


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str
    size: int


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    digest: str
    dim: int


class IndexInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    library: str = "hnswlib 0.8.0"
    space: Literal["ip"] = "ip"
    M: int
    ef_construction: int
    ef: int
    elements: int  # stored, including deleted
    deleted: int
    capacity: int


class PolicyInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    sha256: str


class ThresholdInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float
    metric: Literal["cosine"] = "cosine"
    aggregation: Literal["max"] = "max"  # a person's score: best score over their photos
    basis: dict[str, Any] = Field(default_factory=dict)  # the measured figures it was chosen from


class DeltaInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_version: int
    base_manifest_sha256: str  # sha256 of the previous version's manifest.json bytes
    files: dict[str, FileEntry]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["lookout-bundle/1"] = FORMAT
    version: int
    created: str
    builder: str = f"lookout {__version__}"
    sqlite_version: str = sqlite3.sqlite_version
    purpose: str
    model: ModelInfo
    threshold: ThresholdInfo
    index: IndexInfo
    counts: dict[str, int]  # persons, photos
    jurisdictions: list[str]
    policy: PolicyInfo
    key_id: str
    files: dict[str, FileEntry]
    delta: DeltaInfo | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=1).encode() + b"\n"


def _safe_relpath(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name


def parse_manifest(data: bytes, where: str | Path) -> Manifest:
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(where, "bad_manifest", f"{MANIFEST} is not JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError(where, "bad_manifest", f"{MANIFEST} is not a {FORMAT} manifest")
    try:
        manifest = Manifest.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        raise BundleError(
            where, "bad_manifest", f"{MANIFEST} field {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None
    names = list(manifest.files) + (list(manifest.delta.files) if manifest.delta else [])
    for name in names:
        if not _safe_relpath(name):
            raise BundleError(where, "bad_manifest", f"unsafe file name in manifest: {name!r}")
    for required in (INDEX, GALLERY, POLICY):
        if required not in manifest.files:
            raise BundleError(where, "bad_manifest", f"manifest lists no {required}")
    return manifest


def check_signature(manifest_bytes: bytes, signature_text: bytes | None, public_key, where: str | Path) -> None:
    if public_key is None:
        log.warning("bundle.unverified", bundle=str(where), why="no public key configured: signature not checked")
        return
    key = load_public_key(public_key)
    if not signature_text:
        raise BundleError(where, "bad_signature", f"{SIGNATURE} is missing or empty")
    try:
        signature = base64.b64decode(signature_text.strip(), validate=True)
    except ValueError:
        raise BundleError(where, "bad_signature", f"{SIGNATURE} is not base64") from None
    if not verify(key, signature, manifest_bytes):
        raise BundleError(
            where, "bad_signature", f"{SIGNATURE} does not verify with the configured public key (key id {key_id(key)})"
        )


def check_files(bundle_dir: Path, files: dict[str, FileEntry]) -> None:
    for name, entry in sorted(files.items()):
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(bundle_dir, "missing_file", f"{name} is missing")
        size = path.stat().st_size
        if size != entry.size:
            raise BundleError(
                bundle_dir, "size_mismatch", f"{name} is {size} bytes, manifest says {entry.size} (truncated?)"
            )
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise BundleError(
                bundle_dir,
                "digest_mismatch",
                f"{name} SHA-256 {digest[:16]}... differs from the manifest's {entry.sha256[:16]}...",
            )


def check_model(manifest: Manifest, expected_model_digest: str | None, where: str | Path) -> None:
    if expected_model_digest and manifest.model.digest != expected_model_digest:
        raise BundleError(
            where,
            "wrong_model",
            f"built with {manifest.model.name} digest {manifest.model.digest[:16]}..., this device runs "
            f"digest {expected_model_digest[:16]}...: embeddings would not be comparable",
        )


def check_policy(bundle_dir: Path, manifest: Manifest, policy: Policy | None, location: str | None) -> Policy:
    """The bundle's own policy must be the one in the manifest; every person must be allowed by the
    device's policy (or the bundle's, when the device has none); recognition must be allowed where the device is.
    Returns the policy in force."""
    try:
        bundle_policy = Policy.from_dict(json.loads((bundle_dir / POLICY).read_bytes()), str(bundle_dir / POLICY))
    except (LookoutError, ValueError) as err:
        raise BundleError(bundle_dir, "bad_policy", f"{POLICY} unreadable: {err}") from None
    if bundle_policy.version != manifest.policy.version:
        raise BundleError(
            bundle_dir, "bad_policy", f"{POLICY} version {bundle_policy.version} != manifest {manifest.policy.version}"
        )
    active = policy or bundle_policy
    conn = metadata.connect_readonly(bundle_dir / GALLERY)
    try:
        found = metadata.jurisdictions(conn)
    except sqlite3.DatabaseError as err:
        raise BundleError(bundle_dir, "bad_metadata", f"{GALLERY}: {err}") from None
    finally:
        conn.close()
    for jurisdiction in found:
        for p in {id(active): active, id(bundle_policy): bundle_policy}.values():
            decision = p.decide(jurisdiction or None, manifest.purpose)
            if not decision.allowed:
                raise BundleError(
                    bundle_dir, "policy", f"holds people from a jurisdiction the policy denies: {decision.reason}"
                )
    if location is not None:
        decision = active.decide(location, manifest.purpose)
        if not decision.allowed:
            raise BundleError(
                bundle_dir,
                "policy",
                f"recognition for {manifest.purpose} not allowed at this device's location: {decision.reason}",
            )
    return active


def read_manifest(bundle_dir: Path, public_key=None) -> tuple[Manifest, bytes]:
    bundle_dir = Path(bundle_dir)
    try:
        data = (bundle_dir / MANIFEST).read_bytes()
    except OSError:
        raise BundleError(bundle_dir, "missing_file", f"no {MANIFEST}") from None
    signature = (bundle_dir / SIGNATURE).read_bytes() if (bundle_dir / SIGNATURE).is_file() else None
    check_signature(data, signature, public_key, bundle_dir)
    return parse_manifest(data, bundle_dir), data


def verify_bundle(
    bundle_dir: Path, public_key, expected_model_digest: str | None, policy: Policy | None, location: str | None = None
) -> tuple[Manifest, Policy]:
    """Every check ``load_bundle`` makes, without loading the index. Raises BundleError."""
    bundle_dir = Path(bundle_dir)
    manifest, _ = read_manifest(bundle_dir, public_key)
    check_files(bundle_dir, manifest.files)
    check_model(manifest, expected_model_digest, bundle_dir)
    active = check_policy(bundle_dir, manifest, policy, location)
    return manifest, active


# -- the device-side reader ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    person_id: str
    name: str
    score: float  # cosine similarity, best over the person's photos
    photo_id: str


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
        persons: dict[str, dict],
        photos: list[dict],
        policy: Policy,
    ) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest = manifest
        self.index = index
        self._persons = persons
        self._by_label = {int(p["label"]): (p["photo_id"], p["person_id"]) for p in photos}
        per_person: dict[str, int] = {}
        for p in photos:
            per_person[p["person_id"]] = per_person.get(p["person_id"], 0) + 1
        self._max_photos = max(per_person.values(), default=1)
        self.policy = policy
        self._exact: tuple[np.ndarray, np.ndarray] | None = None
        if len(self._by_label) <= EXACT_SEARCH_MAX:
            labels = np.asarray(sorted(self._by_label), np.int64)
            self._exact = (labels, index.get(labels) if len(labels) else np.zeros((0, index.dim), np.float32))

    @property
    def search_mode(self) -> str:
        return "exact" if self._exact is not None else "hnsw"

    def _nearest(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._exact is None:
            return self.index.search(vectors, k)
        labels, matrix = self._exact
        k = min(k, len(labels))
        if k == 0:
            return np.zeros((len(vectors), 0), np.int64), np.zeros((len(vectors), 0), np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        scores = (vectors / np.maximum(norms, 1e-12)) @ matrix.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, 1)
        order = np.argsort(-top_scores, axis=1)
        return labels[np.take_along_axis(top, order, 1)], np.take_along_axis(top_scores, order, 1)

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
        return len(self._by_label)

    def set_policy(self, policy: Policy) -> None:
        """Change the policy searches are checked against (e.g. the device's policy was updated)."""
        self.policy = policy

    # -- lookups -------------------------------------------------------------------
    def person(self, person_id: str) -> dict | None:
        found = self._persons.get(person_id)
        return dict(found) if found else None

    def persons(self) -> list[dict]:
        return [dict(p) for p in self._persons.values()]

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
        k_photos = min(self.index.count, max(k * self._max_photos, k + 10))
        labels, scores = self._nearest(vectors, k_photos)
        results: list[list[Candidate]] = []
        for row_labels, row_scores in zip(labels, scores):
            best: dict[str, Candidate] = {}
            for label, score in zip(row_labels, row_scores):
                hit = self._by_label.get(int(label))
                if hit is None:
                    continue
                photo_id, person_id = hit
                if person_id not in best:  # results come best first
                    best[person_id] = Candidate(person_id, self._persons[person_id]["name"], float(score), photo_id)
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
        return self.policy.allows(self._persons[person_id].get("jurisdiction"), self.purpose)


def load_bundle(
    bundle_dir: Path,
    public_key: Path | bytes | None,
    expected_model_digest: str | None,
    policy: Policy | None,
    location: str | None = None,
) -> Gallery:
    """Verify a bundle folder (files, signature, model, policy) and load it for searching.

    ``public_key``: PEM path or bytes (None skips the signature check, with a warning: tests only).
    ``expected_model_digest``: the device's embedder digest (None skips the check).
    ``policy``: the device's policy (None: the bundle's own). ``location``: the device's
    jurisdiction; refused if the policy denies recognition there.
    """
    bundle_dir = Path(bundle_dir)
    t0 = time.perf_counter()
    manifest, active = verify_bundle(bundle_dir, public_key, expected_model_digest, policy, location)
    info = manifest.index
    try:
        index = VectorIndex.load(
            bundle_dir / INDEX,
            manifest.model.dim,
            IndexParams(M=info.M, ef_construction=info.ef_construction, ef=info.ef),
            info.deleted,
        )
    except (RuntimeError, ValueError, MemoryError) as err:
        raise BundleError(bundle_dir, "bad_index", f"{INDEX} cannot be loaded: {err}") from None
    conn = metadata.connect_readonly(bundle_dir / GALLERY)
    try:
        persons, photos = metadata.persons(conn), metadata.photos(conn)
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


# -- writing ---------------------------------------------------------------------------------------


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), size=path.stat().st_size)


def manifest_sha256(bundle_dir: Path) -> str:
    return sha256_bytes((Path(bundle_dir) / MANIFEST).read_bytes())


def seal_bundle(
    bundle_dir: Path,
    *,
    version: int,
    purpose: str,
    model: ModelInfo,
    threshold: ThresholdInfo,
    index: VectorIndex,
    policy: Policy,
    private_key,
    delta_from: tuple[int, str] | None = None,
) -> Manifest:
    """Write policy.json, then manifest.json with every file's digest, then its signature.
    ``index.bin`` and ``gallery.sqlite`` must already be in ``bundle_dir``."""
    bundle_dir = Path(bundle_dir)
    key = load_private_key(private_key) if not hasattr(private_key, "sign") else private_key
    (bundle_dir / POLICY).write_bytes(policy.to_json())
    conn = metadata.connect(bundle_dir / GALLERY)
    try:
        n_persons = conn.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
        n_photos = conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
        found = metadata.jurisdictions(conn)
    finally:
        conn.close()
    files = {name: file_entry(bundle_dir / name) for name in (INDEX, GALLERY, POLICY)}
    delta = None
    if delta_from is not None:
        delta = DeltaInfo(
            from_version=delta_from[0],
            base_manifest_sha256=delta_from[1],
            files={name: file_entry(bundle_dir / name) for name in (DELTA_DOC, DELTA_VECTORS)},
        )
    manifest = Manifest(
        version=version,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        purpose=purpose,
        model=model,
        threshold=threshold,
        index=IndexInfo(
            M=index.params.M,
            ef_construction=index.params.ef_construction,
            ef=index.params.ef,
            elements=index.elements,
            deleted=index.deleted,
            capacity=index.capacity,
        ),
        counts={"persons": n_persons, "photos": n_photos},
        jurisdictions=found,
        policy=PolicyInfo(version=policy.version, sha256=files[POLICY].sha256),
        key_id=key_id(key.public_key()),
        files=files,
        delta=delta,
    )
    data = manifest.to_bytes()
    (bundle_dir / MANIFEST).write_bytes(data)
    (bundle_dir / SIGNATURE).write_bytes(base64.b64encode(sign(key, data)) + b"\n")
    return manifest


# -- deltas ----------------------------------------------------------------------------------------


class DeltaDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_version: int
    to_version: int
    capacity: int
    remove_persons: list[str] = Field(default_factory=list)
    remove_photos: list[str] = Field(default_factory=list)
    remove_labels: list[int] = Field(default_factory=list)
    upsert_persons: list[list[Any]] = Field(default_factory=list)  # persons rows
    add_photos: list[list[Any]] = Field(default_factory=list)  # photos rows, vectors.npy in this order


def write_delta(bundle_dir: Path, doc: DeltaDoc, vectors: np.ndarray) -> None:
    out = Path(bundle_dir) / DELTA_DIR
    out.mkdir(parents=True, exist_ok=True)
    (Path(bundle_dir) / DELTA_DOC).write_bytes(json.dumps(doc.model_dump(mode="json"), sort_keys=True).encode())
    with open(Path(bundle_dir) / DELTA_VECTORS, "wb") as f:
        np.save(f, np.ascontiguousarray(vectors, np.float32), allow_pickle=False)


def read_delta(delta_root: Path) -> tuple[DeltaDoc, np.ndarray]:
    """``delta_root`` holds ``delta/delta.json`` and ``delta/vectors.npy``."""
    try:
        doc = DeltaDoc.model_validate_json((Path(delta_root) / DELTA_DOC).read_bytes())
        vectors = np.load(Path(delta_root) / DELTA_VECTORS, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise BundleError(delta_root, "bad_delta", f"delta unreadable: {err}") from None
    if len(vectors) != len(doc.add_photos):
        raise BundleError(delta_root, "bad_delta", f"{len(vectors)} vectors for {len(doc.add_photos)} added photos")
    return doc, vectors


def apply_delta(
    base_dir: Path, base_manifest: Manifest, doc: DeltaDoc, vectors: np.ndarray, out_dir: Path
) -> VectorIndex:
    """Write ``index.bin`` and ``gallery.sqlite`` of the next version into ``out_dir`` from the base
    bundle and a delta. The builder and the device run this same code, so (same hnswlib and SQLite
    versions) the result is byte-identical to the published files, which the manifest then proves."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(base_dir) / GALLERY, out_dir / GALLERY)
    conn = sqlite3.connect(out_dir / GALLERY)
    try:
        with conn:
            metadata.delete_photos(conn, doc.remove_photos)
            metadata.delete_persons(conn, doc.remove_persons)
            metadata.upsert_persons(conn, [tuple(r) for r in doc.upsert_persons])
            metadata.insert_photos(conn, [tuple(r) for r in doc.add_photos])
        conn.execute("VACUUM")
    finally:
        conn.close()
    info = base_manifest.index
    index = VectorIndex.load(
        Path(base_dir) / INDEX,
        base_manifest.model.dim,
        IndexParams(M=info.M, ef_construction=info.ef_construction, ef=info.ef),
        info.deleted,
    )
    index.remove(doc.remove_labels)
    index.resize(doc.capacity)
    labels = np.asarray([row[2] for row in doc.add_photos], np.int64)
    index.add(vectors, labels, num_threads=1)
    index.save(out_dir / INDEX)
    return index


def delta_size(bundle_dir: Path, manifest: Manifest) -> int:
    return sum(e.size for e in manifest.delta.files.values()) if manifest.delta else 0


def full_size(manifest: Manifest) -> int:
    return sum(e.size for e in manifest.files.values())
