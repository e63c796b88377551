"""Publishing: copy a bundle into a folder any static web server (or S3 bucket) serves.

Layout of a publish folder::

    manifest.json          the latest version's manifest (a pointer; fetched conditionally)
    v/<version>/           one folder per version, never changed once written:
        manifest.json  manifest.sig  index.bin  gallery.sqlite  policy.json
        delta/delta.json  delta/vectors.npy     (versions made by `gallery update`)

A device reads ``manifest.json``, then the signature and files from
``v/<version>/``: a version folder is complete before the top manifest points
at it (the top manifest is replaced atomically), so a pull racing a publish
sees either the old or the new version, never a mix.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lookout.errors import InputError
from lookout.gallery.format import MANIFEST, SIGNATURE
from lookout.gallery.verify import read_manifest
from lookout.log import get_logger

log = get_logger(__name__)


def version_dir(root: Path, version: int) -> Path:
    return Path(root) / "v" / str(version)


def publish(bundle_dir: Path, root: Path, public_key=None) -> Path:
    """Copy ``bundle_dir`` to ``root/v/<version>/`` and point ``root/manifest.json`` at it."""
    bundle_dir, root = Path(bundle_dir), Path(root)
    manifest, data = read_manifest(bundle_dir, public_key)
    names = [MANIFEST, SIGNATURE, *manifest.files, *(manifest.delta.files if manifest.delta else ())]
    for name in names:
        if not (bundle_dir / name).is_file():
            raise InputError(str(bundle_dir), f"bundle incomplete: {name} missing")
    target = version_dir(root, manifest.version)
    if target.exists():
        existing = (target / MANIFEST).read_bytes() if (target / MANIFEST).exists() else b""
        if existing != data:
            raise InputError(
                str(target),
                f"version {manifest.version} already published with other content "
                "(versions are immutable: build a new version)",
            )
    else:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".publish-", dir=root))
        for name in names:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle_dir / name, tmp / name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    top = root / (MANIFEST + ".tmp")
    top.write_bytes(data)
    old = root / MANIFEST
    if old.exists():
        # Clients revalidate with If-Modified-Since (1 s resolution): a new version must look newer.
        previous = int(old.stat().st_mtime)
        if int(top.stat().st_mtime) <= previous:
            os.utime(top, (previous + 1, previous + 1))
    os.replace(top, root / MANIFEST)
    log.info("bundle.published", root=str(root), version=manifest.version, files=len(names))
    return target
