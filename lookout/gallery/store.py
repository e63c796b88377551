"""Verified bundles on the device: ``current``, ``previous`` and a staging area.

``BundleStore(root)`` keeps verified bundles under ``root/versions/`` and two
symlinks, ``current`` and ``previous``, each replaced with ``os.replace`` (an
atomic rename), so a reader sees the old or the new bundle, never half of one.
The puller (``lookout.gallery.pull``) stages and verifies; the store installs,
keeps the last good one and rolls back.

A rollback pins the version it goes back to (``pin.json``): the puller then installs
nothing newer until the operator unpins (``lookout sync unpin``). Without the pin the
next pull would bring back the very version that was rolled back.

The store also keeps the public key the puller verified its bundles with (``KEY_FILE``), so
``lookout search --gallery STORE`` checks the installed bundle's signature again without
being given the key (a copied or edited store no longer verifies).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from lookout.gallery.format import BundleError, Manifest
from lookout.gallery.verify import read_manifest
from lookout.log import get_logger

log = get_logger(__name__)

KEY_FILE = "signing-key.pub.pem"  # the public key (PEM) the installed bundles were verified with


class BundleStore:
    """Verified bundles on the device: ``current``, ``previous`` and a staging area."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.staging = self.root / "staging"
        for d in (self.versions, self.staging):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _link(self, name: str) -> Path | None:
        link = self.root / name
        if not link.is_symlink():
            return None
        target = (self.root / os.readlink(link)).resolve()
        return target if target.is_dir() else None

    @staticmethod
    def is_store(path: Path) -> bool:
        """A store folder (what ``sync pull --into`` makes), as opposed to a bundle folder."""
        return (Path(path) / "current").is_symlink()

    def remember_key(self, pem: bytes) -> None:
        """Keep the public key (PEM) the installed bundles were verified with (written atomically, once)."""
        path = self.root / KEY_FILE
        if self.verified_key() == pem:
            return
        tmp = path.with_name(f".{KEY_FILE}.tmp")
        tmp.write_bytes(pem)
        os.replace(tmp, path)

    def verified_key(self) -> bytes | None:
        """The public key the puller verified the installed bundles with; None for a store made before it kept one."""
        try:
            return (self.root / KEY_FILE).read_bytes()
        except OSError:
            return None

    def current_dir(self) -> Path | None:
        return self._link("current")

    def previous_dir(self) -> Path | None:
        return self._link("previous")

    def current_manifest(self) -> Manifest | None:
        current = self.current_dir()
        if current is None:
            return None
        try:
            return read_manifest(current, check_signature_now=False)[0]  # verified when installed
        except BundleError as err:
            log.warning("sync.current_unreadable", bundle=str(current), error=str(err))
            return None

    def new_staging(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="stage-", dir=self.staging))

    def _set(self, name: str, target: Path | None) -> None:
        link = self.root / name
        if target is None:
            if link.is_symlink():
                link.unlink()
            return
        tmp = self.root / f".{name}.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.path.relpath(target, self.root), tmp)
        os.replace(tmp, link)

    def install(self, staged: Path, version: int) -> Path:
        """Move a verified staged bundle in and make it current; the old current becomes previous."""
        with self._lock:
            final = self.versions / f"{version:08d}-{int(time.time() * 1000)}"
            os.replace(staged, final)
            old = self.current_dir()
            if old is not None:
                self._set("previous", old)
            self._set("current", final)
            self._prune()
            return final

    def rollback(self, reason: str = "rollback") -> Path | None:
        """Make the previous bundle current again (and the current one previous), and pin it there:
        pulls install nothing newer until :meth:`unpin`. None when there is no previous bundle."""
        with self._lock:
            prev, cur = self.previous_dir(), self.current_dir()
            if prev is None:
                return None
            self._set("current", prev)
            self._set("previous", cur)
        manifest = self.current_manifest()
        from_version = None
        if cur is not None:
            with contextlib.suppress(BundleError):
                from_version = read_manifest(cur, check_signature_now=False)[0].version
        self.pin(manifest.version if manifest else None, reason, from_version)
        state = self.load_state()
        for key in ("etag", "last_modified"):  # the next unpinned pull must look at the manifest again
            state.pop(key, None)
        self.save_state(state)
        log.warning("sync.rolled_back", version=manifest.version if manifest else None, was=from_version)
        return prev

    # -- pin -----------------------------------------------------------------------------
    def _pin_path(self) -> Path:
        return self.root / "pin.json"

    def pin(self, version: int | None, reason: str, from_version: int | None = None) -> None:
        doc = {
            "version": version,
            "reason": reason,
            "from_version": from_version,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = self._pin_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self._pin_path())

    def pinned(self) -> dict[str, Any] | None:
        """The pin (version, reason, from_version, at) or None. A pin file that exists but cannot be read
        still pins (fail closed: an operator rolled back for a reason); `unpin` removes it."""
        try:
            text = self._pin_path().read_text()
        except FileNotFoundError:
            return None
        except OSError as err:
            return {"version": None, "reason": f"pin.json unreadable ({err.strerror or err})", "at": None}
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            return {"version": None, "reason": "pin.json unreadable (not a JSON object)", "at": None}
        return doc

    def unpin(self) -> dict[str, Any] | None:
        """Lift the pin; returns it (None when there was none). The next pull installs the newest version."""
        pin = self.pinned()
        with contextlib.suppress(FileNotFoundError):
            self._pin_path().unlink()
        return pin

    def status(self) -> dict[str, Any]:
        """What ``lookout sync status`` shows: current and previous versions, the pin, the last pull."""

        def describe(path: Path | None) -> dict[str, Any] | None:
            if path is None:
                return None
            try:
                manifest = read_manifest(path, check_signature_now=False)[0]
            except BundleError as err:
                return {"dir": str(path), "error": str(err)}
            return {
                "dir": str(path),
                "version": manifest.version,
                "gallery_id": manifest.gallery_id,
                "created": manifest.created,
                "persons": manifest.counts.get("persons"),
                "photos": manifest.counts.get("photos"),
            }

        return {
            "store": str(self.root),
            "current": describe(self.current_dir()),
            "previous": describe(self.previous_dir()),
            "pinned": self.pinned(),
            "last_pull": {k: v for k, v in self.load_state().items() if k not in ("etag", "last_modified")},
        }

    def _prune(self) -> None:
        keep = {self.current_dir(), self.previous_dir()}
        for d in self.versions.iterdir():
            if d.resolve() not in keep:
                shutil.rmtree(d, ignore_errors=True)
        for d in self.staging.iterdir():
            shutil.rmtree(d, ignore_errors=True)

    # conditional-GET validators for the manifest URL
    def _state_path(self) -> Path:
        return self.root / "sync-state.json"

    def load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self._state_path().read_text())
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def save_state(self, state: dict[str, Any]) -> None:
        tmp = self._state_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._state_path())
