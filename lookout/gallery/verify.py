"""Checking a bundle before anyone uses it: signature, files, model, policy.

Every check raises ``BundleError`` with a reason code and a sentence saying what
was wrong and where; nothing is half-accepted. The device, ``sync pull``, search
and evaluation all go through ``verify_bundle`` (``reader.load_bundle`` calls it).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

from lookout.digest import sha256_file
from lookout.errors import LookoutError
from lookout.gallery import metadata
from lookout.gallery.format import (
    GALLERY,
    MANIFEST,
    POLICY,
    SIGNATURE,
    BundleError,
    FileEntry,
    Manifest,
    parse_manifest,
)
from lookout.gallery.keys import PublicKeySource, key_id, load_public_key, verify
from lookout.gallery.policy import Policy
from lookout.log import get_logger

log = get_logger(__name__)

UNVERIFIED = (
    "no public key to check its signature with: refused (unsigned, its people and jurisdictions could be anyone's); "
    "give the key that signs your galleries (--public-key, gallery.public_key), or search a sync store whose bundles "
    "`lookout sync pull` verified"
)


def check_signature(
    manifest_bytes: bytes, signature_text: bytes | None, public_key: PublicKeySource | None, where: str | Path
) -> None:
    """The signature must verify with the configured key; without a key (``allow_unsigned``, tests and tools that
    read their own output only) a warning says so."""
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
    """Every listed file is present with the size and SHA-256 the manifest gives."""
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
    """Embeddings of another model (or the same weights aligned differently) are not comparable."""
    if expected_model_digest and manifest.model.digest != expected_model_digest:
        raise BundleError(
            where,
            "wrong_model",
            f"built with {manifest.model.name} digest {manifest.model.digest[:16]}..., this device runs "
            f"digest {expected_model_digest[:16]}...: embeddings would not be comparable",
        )


def check_policy(bundle_dir: Path, manifest: Manifest, policy: Policy | None, location: str | None) -> Policy:
    """The bundle's own policy must be the one in the manifest; every person must be allowed by the
    device's policy and by the bundle's own; recognition must be allowed where the device is.
    Returns the policy in force.

    Defence in depth: with no device policy, the built-in one (``Policy.default()``, deny US-IL)
    is the device's, never the bundle's alone: a bundle signed with an allow-all policy and holding
    someone in Illinois is refused by pull, search and run alike."""
    try:
        bundle_policy = Policy.from_dict(json.loads((bundle_dir / POLICY).read_bytes()), str(bundle_dir / POLICY))
    except (LookoutError, ValueError) as err:
        raise BundleError(bundle_dir, "bad_policy", f"{POLICY} unreadable: {err}") from None
    if bundle_policy.version != manifest.policy.version:
        raise BundleError(
            bundle_dir, "bad_policy", f"{POLICY} version {bundle_policy.version} != manifest {manifest.policy.version}"
        )
    active = policy or Policy.default()
    conn = metadata.connect_readonly(bundle_dir / GALLERY)
    try:
        found = metadata.places(conn)
    except sqlite3.DatabaseError as err:
        raise BundleError(bundle_dir, "bad_metadata", f"{GALLERY}: {err}") from None
    finally:
        conn.close()
    for jurisdiction, department in found:
        for p in {id(active): active, id(bundle_policy): bundle_policy}.values():
            decision = p.decide(jurisdiction, manifest.purpose, department)
            if not decision.allowed:
                raise BundleError(
                    bundle_dir,
                    "policy",
                    f"holds people from a jurisdiction or department the policy denies: {decision.reason}",
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


def check_binding(manifest: Manifest, gallery_id: str | None, purpose: str | None, where: str | Path) -> None:
    """The bundle belongs to the gallery (and serves the purpose) the device is for. A key signs every gallery an
    organisation builds: without this, whoever answers the publish URL could swap in another of its galleries (a
    police-accountability line on missing-person cameras, a staging build) with a higher version. A bundle built
    before gallery ids (``gallery_id`` None) is refused where a gallery id is expected: fail closed."""
    if gallery_id is not None and manifest.gallery_id != gallery_id:
        found = manifest.gallery_id or "none (built before gallery ids: rebuild or update it with --gallery-id)"
        raise BundleError(where, "wrong_gallery", f"bundle belongs to gallery {found}, expected gallery {gallery_id}")
    if purpose is not None and manifest.purpose != purpose:
        raise BundleError(where, "wrong_purpose", f"bundle's purpose is {manifest.purpose!r}, expected {purpose!r}")


def read_manifest(
    bundle_dir: Path, public_key: PublicKeySource | None = None, *, check_signature_now: bool = True
) -> tuple[Manifest, bytes]:
    """The manifest and its exact bytes, after checking its signature (files are not checked here).
    ``check_signature_now=False`` reads a bundle verified earlier (the store's installed ones) without
    a check, and without the "no public key configured" warning that a check without a key logs."""
    bundle_dir = Path(bundle_dir)
    try:
        data = (bundle_dir / MANIFEST).read_bytes()
    except OSError:
        raise BundleError(bundle_dir, "missing_file", f"no {MANIFEST}") from None
    signature = (bundle_dir / SIGNATURE).read_bytes() if (bundle_dir / SIGNATURE).is_file() else None
    if check_signature_now:
        check_signature(data, signature, public_key, bundle_dir)
    return parse_manifest(data, bundle_dir), data


def verify_bundle(
    bundle_dir: Path,
    public_key: PublicKeySource | None,
    expected_model_digest: str | None,
    policy: Policy | None,
    location: str | None = None,
    *,
    allow_unsigned: bool = False,
    gallery_id: str | None = None,
    purpose: str | None = None,
) -> tuple[Manifest, Policy]:
    """Every check ``load_bundle`` makes, without loading the index. Raises BundleError.

    Fail closed: without ``public_key`` the bundle is refused (``unverified``) unless ``allow_unsigned`` says so
    in so many words. The policy check reads the people's jurisdictions from ``gallery.sqlite``; with the signature
    unchecked anyone can edit them (and the manifest's digests) and the check checks nothing."""
    bundle_dir = Path(bundle_dir)
    if public_key is None and not allow_unsigned:
        raise BundleError(bundle_dir, "unverified", UNVERIFIED)
    manifest, _ = read_manifest(bundle_dir, public_key)
    check_binding(manifest, gallery_id, purpose, bundle_dir)
    check_files(bundle_dir, manifest.files)
    check_model(manifest, expected_model_digest, bundle_dir)
    active = check_policy(bundle_dir, manifest, policy, location)
    return manifest, active
