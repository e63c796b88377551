"""A gallery at deployment size for benchmarks: a real bundle padded with synthetic people.

The missing-persons use holds about 14,400 people and 25,000 photos. Benchmarks of the
device (memory, search time) need a bundle that size, and building one from real photos
takes hours; what they measure does not depend on the faces being real. So
:func:`pad_gallery` takes a real bundle (faces-dev's, say: its people are the ones the
test video shows) and adds synthetic people with random unit vectors (nobody in a
video resembles them: cosine about 0 against real faces, far below any threshold),
then seals and signs it like ``gallery build`` does. Never for a real deployment.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from lookout.gallery import metadata
from lookout.gallery.format import GALLERY, INDEX, load_index
from lookout.gallery.index import IndexParams, VectorIndex
from lookout.gallery.policy import Policy
from lookout.gallery.verify import read_manifest
from lookout.sync.seal import seal_bundle

NAMUS_PHOTOS = 25_000
NAMUS_PERSONS = 14_400


def pad_gallery(
    bundle: Path,
    out: Path,
    private_key: Path,
    *,
    photos: int = NAMUS_PHOTOS,
    persons: int = NAMUS_PERSONS,
    seed: int = 0,
) -> Path:
    """Copy ``bundle`` to ``out`` with synthetic people added until it holds ``photos`` photos of about
    ``persons`` people (the real ones included); signed with ``private_key``."""
    manifest, _raw = read_manifest(bundle)
    real = load_index(bundle, manifest)
    labels = np.asarray(real.labels(), np.int64)
    real_vectors = real.get(labels) if len(labels) else np.zeros((0, manifest.model.dim), np.float32)
    extra_photos = max(0, photos - len(labels))
    extra_persons = max(1, min(extra_photos, persons - manifest.counts["persons"]))
    rng = np.random.default_rng(seed)
    synthetic = rng.standard_normal((extra_photos, manifest.model.dim)).astype(np.float32)
    synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
    owner = np.sort(rng.integers(0, extra_persons, extra_photos))
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(bundle / GALLERY, out / GALLERY)
    conn = metadata.connect(out / GALLERY)
    with conn:
        metadata.upsert_persons(
            conn, [(f"synthetic-{i:05d}", f"Synthetic Person {i}", "GB", None, "{}") for i in range(extra_persons)]
        )
        start = int(labels.max()) + 1 if len(labels) else 0
        metadata.insert_photos(
            conn,
            [
                (f"synthetic-photo-{i:05d}", f"synthetic-{owner[i]:05d}", start + i, "synthetic", "0" * 64, "[]", "{}")
                for i in range(extra_photos)
            ],
        )
    conn.execute("VACUUM")
    conn.close()
    params = IndexParams(M=manifest.index.M, ef_construction=manifest.index.ef_construction, ef=manifest.index.ef)
    index = VectorIndex.create(manifest.model.dim, params, capacity=len(labels) + extra_photos)
    index.add(np.concatenate([real_vectors, synthetic]), np.concatenate([labels, start + np.arange(extra_photos)]))
    index.save(out / INDEX)
    seal_bundle(
        out,
        version=manifest.version,
        purpose=manifest.purpose,
        model=manifest.model,
        threshold=manifest.threshold,
        index=index,
        policy=Policy.load(bundle / "policy.json"),
        private_key=private_key,
    )
    (out / "SYNTHETIC.txt").write_text(
        json.dumps({"padded_from": str(bundle), "synthetic_photos": extra_photos, "synthetic_persons": extra_persons})
    )
    return out
