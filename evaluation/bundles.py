"""Calibration and gallery bundles: read a bundle's enrolled vectors, write a calibrated threshold into it.

The threshold lives in the bundle manifest (``threshold.value``, with the
calibration it came from in ``threshold.basis``), so the device and
``lookout search`` use the threshold tied to that gallery, model and
precision. Changing it changes the signed manifest: the bundle is re-signed
and its version goes up by one (a full version, not a delta), so devices fetch
it like any new version.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lookout.errors import InputError
from lookout.evaluation.calibration import Calibration
from lookout.gallery.format import Manifest, ThresholdInfo
from lookout.gallery.keys import PrivateKeySource, PublicKeySource, write_signed_manifest
from lookout.gallery.reader import load_bundle
from lookout.gallery.threshold import threshold_problem
from lookout.gallery.verify import read_manifest

CALIBRATION_BASIS = "calibration"


def bundle_vectors(
    bundle_dir: Path, public_key: PublicKeySource | None = None
) -> tuple[Manifest, list[str], np.ndarray, np.ndarray]:
    """(manifest, persons, vectors (M, D), owner (M,)) of a verified bundle's enrolled photos."""
    gallery = load_bundle(Path(bundle_dir), public_key, None, None)
    owners, vectors = gallery.enrolled()
    persons = sorted(set(owners))
    where = {p: i for i, p in enumerate(persons)}
    return gallery.manifest, persons, vectors, np.asarray([where[p] for p in owners], np.int64)


def bundle_calibration(manifest: Manifest) -> Calibration | None:
    """The calibration recorded in a bundle manifest, if any."""
    basis = manifest.threshold.basis or {}
    doc = basis.get(CALIBRATION_BASIS)
    return Calibration.from_dict(doc) if isinstance(doc, dict) else None


def calibration_problems(manifest: Manifest) -> list[str]:
    """Why a bundle's threshold is not (or no longer) calibrated for it; empty when it is."""
    cal = bundle_calibration(manifest)
    if cal is None:
        return ["the threshold was not calibrated for this gallery: run `lookout calibrate`"]
    out = cal.problems(manifest.counts.get("persons", 0), manifest.model.digest)
    if abs(cal.threshold - manifest.threshold.value) > 1e-9:
        out.append(f"the threshold {manifest.threshold.value:.4f} differs from the calibrated {cal.threshold:.4f}")
    return out


def apply_calibration(
    bundle_dir: Path,
    calibration: Calibration,
    private_key: PrivateKeySource,
    public_key: PublicKeySource | None = None,
) -> Manifest:
    """Write ``calibration`` into the bundle manifest as its threshold; re-sign; version + 1. Returns the manifest."""
    bundle_dir = Path(bundle_dir)
    manifest, _ = read_manifest(bundle_dir, public_key)
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
    problem = threshold_problem(float(calibration.threshold))
    if problem:
        raise InputError(str(bundle_dir), f"the calibration's threshold cannot be written: {problem}")
    threshold = ThresholdInfo(
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
    write_signed_manifest(bundle_dir, updated.to_bytes(), private_key)
    return updated
