"""Bundle deltas: what changed between two versions, and how a base plus a delta makes the next.

``delta/delta.json`` lists persons and photos removed and added and the index
labels removed; ``delta/vectors.npy`` holds the added photos' embeddings, in
order. ``apply_delta`` is run by the builder (``lookout.sync.seal``) and by the
device (``pull``) alike, so both produce the same bytes.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lookout.gallery import metadata
from lookout.gallery.format import DELTA_DOC, DELTA_VECTORS, GALLERY, INDEX, BundleError, Manifest, load_index
from lookout.gallery.index import VectorIndex


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
    # the withdrawal ledger (metadata.withdrawn): rows added (kind, id, reason, at) and (kind, id) lifted.
    # Left out of delta.json when empty, so devices from before the ledger still read such deltas.
    withdraw: list[list[str]] = Field(default_factory=list)
    reinstate: list[list[str]] = Field(default_factory=list)


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
            metadata.change_withdrawn(conn, doc.withdraw, doc.reinstate)
        conn.execute("VACUUM")
    finally:
        conn.close()
    index = load_index(base_dir, base_manifest)
    index.remove(doc.remove_labels)
    index.resize(doc.capacity)
    labels = np.asarray([row[2] for row in doc.add_photos], np.int64)
    index.add(vectors, labels, num_threads=1)
    index.save(out_dir / INDEX)
    return index
