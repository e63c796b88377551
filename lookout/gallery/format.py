"""The gallery bundle format: file names, the manifest, and the one error every check raises.

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

Reading and checking a bundle: ``verify`` and ``reader``; deltas: ``delta``;
writing one is the cloud side's job (``lookout.sync.seal``).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lookout import __version__
from lookout.digest import sha256_bytes
from lookout.errors import LookoutError
from lookout.gallery.index import IndexParams, VectorIndex
from lookout.gallery.purpose import Purpose

FORMAT: Final = "lookout-bundle/1"
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
    digest: str  # the FP32 model's, whatever precision embedded the gallery
    dim: int
    # The number format the gallery was embedded at (lookout.model_store.precision). A device may search it
    # at another: every precision in use agrees with FP32 within the stated score tolerance.
    precision: Literal["fp32", "bf16", "int8"] = "fp32"


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
    value: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False)  # a cosine (a bundle saying -3 matches everyone)
    metric: Literal["cosine"] = "cosine"
    aggregation: Literal["max"] = "max"  # a person's score: best score over their photos
    basis: dict[str, Any] = Field(default_factory=dict)  # the measured figures it was chosen from


class DeltaInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_version: int
    base_manifest_sha256: str  # sha256 of the previous version's manifest.json bytes
    files: dict[str, FileEntry]


GALLERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a gallery id: 1-64 plain characters


def gallery_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a gallery id, or None."""
    if GALLERY_ID.fullmatch(value):
        return None
    return "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["lookout-bundle/1"] = FORMAT
    version: int
    created: str
    builder: str = f"lookout {__version__}"
    sqlite_version: str = sqlite3.sqlite_version
    purpose: Purpose
    # The gallery line this bundle belongs to (set at build, kept by every update): a device configured for one
    # gallery (or holding one) refuses another's bundles, however validly signed. None: built before gallery ids.
    gallery_id: str | None = None
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
    except (ValueError, RecursionError) as err:  # not JSON/UTF-8, a 5,000-digit number; deep nesting: RecursionError
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


def manifest_sha256(bundle_dir: Path) -> str:
    """SHA-256 of a bundle's manifest bytes: what a delta names as its base."""
    return sha256_bytes((Path(bundle_dir) / MANIFEST).read_bytes())


def load_index(bundle_dir: Path, manifest: Manifest) -> VectorIndex:
    """The bundle's HNSW index with the parameters its manifest records (hnswlib does not save ``ef``)."""
    info = manifest.index
    return VectorIndex.load(
        Path(bundle_dir) / INDEX,
        manifest.model.dim,
        IndexParams(M=info.M, ef_construction=info.ef_construction, ef=info.ef),
        info.deleted,
    )
