"""Writing gallery bundles (the builder's side of ``lookout.gallery``): seal and sign a folder.

``seal_bundle`` writes ``policy.json``, then ``manifest.json`` with every file's
digest, then its signature; ``write_delta`` writes the delta of an update. What
a bundle is, and how it is read and checked, is in ``lookout.gallery``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from lookout.digest import sha256_file
from lookout.gallery import metadata
from lookout.gallery.delta import DeltaDoc
from lookout.gallery.format import (
    DELTA_DIR,
    DELTA_DOC,
    DELTA_VECTORS,
    GALLERY,
    INDEX,
    POLICY,
    DeltaInfo,
    FileEntry,
    IndexInfo,
    Manifest,
    ModelInfo,
    PolicyInfo,
    ThresholdInfo,
)
from lookout.gallery.index import VectorIndex
from lookout.gallery.keys import PrivateKeySource, key_id, load_private_key, write_signed_manifest
from lookout.gallery.policy import Policy


def file_entry(path: Path) -> FileEntry:
    """A file's SHA-256 and size, as the manifest lists it."""
    return FileEntry(sha256=sha256_file(path), size=path.stat().st_size)


def seal_bundle(
    bundle_dir: Path,
    *,
    version: int,
    purpose: str,
    model: ModelInfo,
    threshold: ThresholdInfo,
    index: VectorIndex,
    policy: Policy,
    private_key: PrivateKeySource,
    delta_from: tuple[int, str] | None = None,
    gallery_id: str | None = None,
) -> Manifest:
    """Write policy.json, then manifest.json with every file's digest, then its signature.
    ``index.bin`` and ``gallery.sqlite`` must already be in ``bundle_dir``."""
    bundle_dir = Path(bundle_dir)
    key = load_private_key(private_key)
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
        gallery_id=gallery_id,
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
    write_signed_manifest(bundle_dir, manifest.to_bytes(), key)
    return manifest


def write_delta(bundle_dir: Path, doc: DeltaDoc, vectors: np.ndarray) -> None:
    """``delta/delta.json`` and ``delta/vectors.npy`` (the added photos' embeddings, in ``add_photos`` order)."""
    out = Path(bundle_dir) / DELTA_DIR
    out.mkdir(parents=True, exist_ok=True)
    empty_new_fields = {name for name in ("withdraw", "reinstate") if not getattr(doc, name)}
    data = doc.model_dump(mode="json", exclude=empty_new_fields)
    (Path(bundle_dir) / DELTA_DOC).write_bytes(json.dumps(data, sort_keys=True).encode())
    with open(Path(bundle_dir) / DELTA_VECTORS, "wb") as f:
        np.save(f, np.ascontiguousarray(vectors, np.float32), allow_pickle=False)
