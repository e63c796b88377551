"""Calibration and gallery bundles: read a bundle's enrolled vectors, write a calibrated threshold into it.

The threshold lives in the bundle manifest (``threshold.value``, with the
calibration it came from in ``threshold.basis``), so the device and
``lookout search`` use the threshold tied to that gallery, model and
precision. Changing it changes the signed manifest: the bundle is re-signed
and its version goes up by one (a full version, not a delta), so devices fetch
it like any new version.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np

from lookout.errors import InputError
from lookout.evaluation.calibration import Calibration

CALIBRATION_BASIS = "calibration"


def bundle_vectors(bundle_dir: Path, public_key=None):
    """(manifest, persons, vectors (M, D), owner (M,)) of a verified bundle's enrolled photos."""
    from lookout.gallery import format as b
    from lookout.gallery import metadata
    from lookout.gallery.index import IndexParams, VectorIndex

    bundle_dir = Path(bundle_dir)
    manifest, _ = b.read_manifest(bundle_dir, public_key)
    b.check_files(bundle_dir, manifest.files)
    info = manifest.index
    index = VectorIndex.load(
        bundle_dir / b.INDEX,
        manifest.model.dim,
        IndexParams(M=info.M, ef_construction=info.ef_construction, ef=info.ef),
        info.deleted,
    )
    conn = metadata.connect_readonly(bundle_dir / b.GALLERY)
    try:
        photos = metadata.photos(conn)
    finally:
        conn.close()
    persons = sorted({p["person_id"] for p in photos})
    where = {p: i for i, p in enumerate(persons)}
    vectors = np.asarray(index.get([p["label"] for p in photos]), np.float32).reshape(len(photos), manifest.model.dim)
    owner = np.asarray([where[p["person_id"]] for p in photos], np.int64)
    return manifest, persons, vectors, owner


def bundle_calibration(manifest) -> Calibration | None:
    """The calibration recorded in a bundle manifest, if any."""
    basis = manifest.threshold.basis or {}
    doc = basis.get(CALIBRATION_BASIS)
    return Calibration.from_dict(doc) if isinstance(doc, dict) else None


def calibration_problems(manifest) -> list[str]:
    """Why a bundle's threshold is not (or no longer) calibrated for it; empty when it is."""
    cal = bundle_calibration(manifest)
    if cal is None:
        return ["the threshold was not calibrated for this gallery: run `lookout calibrate`"]
    out = cal.problems(manifest.counts.get("persons", 0), manifest.model.digest)
    if abs(cal.threshold - manifest.threshold.value) > 1e-9:
        out.append(f"the threshold {manifest.threshold.value:.4f} differs from the calibrated {cal.threshold:.4f}")
    return out


def apply_calibration(bundle_dir: Path, calibration: Calibration, private_key, public_key=None):
    """Write ``calibration`` into the bundle manifest as its threshold; re-sign; version + 1. Returns the manifest."""
    from lookout.gallery import format as b
    from lookout.gallery.keys import load_private_key, sign

    bundle_dir = Path(bundle_dir)
    manifest, _ = b.read_manifest(bundle_dir, public_key)
    if manifest.model.digest != calibration.model_digest:
        raise InputError(
            str(bundle_dir),
            f"built with model {manifest.model.name} {manifest.model.digest[:12]}, "
            f"calibrated on {calibration.model_name} {calibration.model_digest[:12]}: "
            f"calibrate with the bundle's model",
        )
    persons = manifest.counts.get("persons", 0)
    if persons != calibration.gallery_size:
        raise InputError(str(bundle_dir), f"holds {persons} people, the calibration is for {calibration.gallery_size}")
    key = private_key if hasattr(private_key, "sign") else load_private_key(private_key)
    threshold = b.ThresholdInfo(
        value=float(calibration.threshold),
        basis={**(manifest.threshold.basis or {}), CALIBRATION_BASIS: calibration.to_dict()},
    )
    updated = manifest.model_copy(
        update={
            "threshold": threshold,
            "version": manifest.version + 1,
            "delta": None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    data = updated.to_bytes()
    (bundle_dir / b.MANIFEST).write_bytes(data)
    (bundle_dir / b.SIGNATURE).write_bytes(base64.b64encode(sign(key, data)) + b"\n")
    return updated
