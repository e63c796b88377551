"""Device-side sync: fetch new bundles, verify them, and install them in a ``BundleStore``.

``BundlePuller`` talks to a publish folder (see lookout.sync.publish):

1. conditional GET of ``manifest.json`` (ETag / Last-Modified): 304 costs nothing;
2. the signature from ``v/<version>/manifest.sig`` is checked before anything else;
3. the delta chain from the current version when there is one (each step's
   files checked against its signed manifest), else every file of the new version,
   is downloaded into ``root/staging/``;
4. the staged bundle gets every check ``load_bundle`` makes (sizes, SHA-256,
   signature, model, policy) and only then becomes ``current``.

Any failure (network down, truncated file, flipped byte, bad signature, wrong
model, policy) leaves ``current`` as it was and logs one ``sync.rejected`` or
``sync.unreachable`` line saying what was wrong. Every request over http(s) has a
deadline for the whole of it (``lookout.http_client``): ``timeout_s`` for the manifest
and signature, plus the file's size at ``MIN_RATE_BYTES_S`` for a download. A server
trickling bytes is cut off, and the next pull tries again (a wedged puller would never
install a later bundle, nor the withdrawals it carries).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from lookout.digest import sha256_bytes
from lookout.errors import LookoutError
from lookout.gallery.delta import apply_delta, read_delta
from lookout.gallery.format import (
    MANIFEST,
    POLICY,
    SIGNATURE,
    BundleError,
    DeltaInfo,
    Manifest,
    manifest_sha256,
    parse_manifest,
)
from lookout.gallery.keys import PublicKeySource, load_public_key, public_pem
from lookout.gallery.policy import Policy
from lookout.gallery.store import BundleStore
from lookout.gallery.verify import check_binding, check_files, check_model, check_signature, verify_bundle
from lookout.http_client import FetchError, HttpClient, Response
from lookout.log import get_logger

log = get_logger(__name__)

MAX_MANIFEST_BYTES = 1 << 20
MAX_DELTA_CHAIN = 16
USER_AGENT = "lookout-sync/1"
MIN_RATE_BYTES_S = 16 * 1024  # a download slower than this on average (128 kbit/s) is cut off at its deadline


class SyncError(LookoutError):
    """The publish server could not be reached or answered wrongly."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


class BundlePuller:
    """Keeps a ``BundleStore`` up to date with a publish URL, once (``pull_once``) or in a thread."""

    def __init__(
        self,
        url: str,
        store: BundleStore,
        public_key: PublicKeySource | None,
        expected_model_digest: str | None,
        policy: Policy | None,
        interval_s: float = 300.0,
        on_swap: Callable[[Path], None] | None = None,
        location: str | None = None,
        timeout_s: float = 30.0,
        gallery_id: str | None = None,
        purpose: str | None = None,
    ) -> None:
        """``gallery_id`` / ``purpose``: the gallery and purpose this store is for. Without them the store is bound
        to the gallery (and purpose) of the bundle it holds: a bundle of another gallery is refused either way."""
        self.url = url
        self.store = store
        self.public_key = public_key
        self.expected_model_digest = expected_model_digest
        self.policy = policy
        self.interval_s = interval_s
        self.on_swap = on_swap
        self.location = location
        self.timeout_s = timeout_s
        self.gallery_id = gallery_id
        self.purpose = purpose
        self.http = HttpClient(retries=0, timeout_s=timeout_s, user_agent=USER_AGENT)
        self.last_error: str | None = None
        self.published_version: int | None = None  # the version the publish URL offered at the last pull
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- HTTP ----------------------------------------------------------------------
    def _fetch(
        self, url: str, limit: int, headers: dict[str, str] | None = None, sink: BinaryIO | None = None
    ) -> Response:
        """One GET of at most ``limit`` bytes (into ``sink`` when given). Over http(s) the whole request has a
        deadline: ``timeout_s``, plus the time ``limit`` bytes take at ``MIN_RATE_BYTES_S`` for a download, so a
        server trickling bytes cannot wedge the puller (and with it every later bundle, withdrawals included)."""
        if not url.lower().startswith(("http://", "https://")):
            return self._fetch_local(url, limit, headers, sink)
        timeout = self.timeout_s + (limit / MIN_RATE_BYTES_S if sink is not None else 0.0)
        try:
            return self.http.fetch(url, headers=headers, timeout_s=timeout, max_bytes=limit, sink=sink)
        except FetchError as err:
            raise SyncError(str(err)) from None

    def _fetch_local(self, url: str, limit: int, headers: dict[str, str] | None, sink: BinaryIO | None) -> Response:
        """A ``file://`` publish folder (tests, a mounted share): read through urllib, no deadline needed."""
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
        try:
            with urllib.request.urlopen(request) as resp:
                data: bytes = resp.read(limit + 1)
                found = resp.headers
        except urllib.error.HTTPError as err:
            raise SyncError(f"{url}: HTTP {err.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise SyncError(f"{url}: {getattr(err, 'reason', err)}") from None
        if len(data) > limit:
            raise SyncError(f"{url}: larger than {limit} bytes")
        if sink is not None:
            sink.write(data)
            return Response(200, found)
        return Response(200, found, data)

    def _get_bytes(self, path: str, limit: int) -> bytes:
        return self._fetch(_join(self.url, path), limit).body

    def _download(self, path: str, dest: Path, size: int) -> None:
        """Fetch to ``dest``, refusing more than ``size`` bytes (a short file is caught by the size check)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as f:
            self._fetch(_join(self.url, path), size, sink=f)

    def _signed_manifest(self, version: int, data: bytes | None = None) -> tuple[Manifest, bytes, bytes]:
        vdir = f"v/{version}"
        if data is None:
            data = self._get_bytes(f"{vdir}/{MANIFEST}", MAX_MANIFEST_BYTES)
        sig = self._get_bytes(f"{vdir}/{SIGNATURE}", 4096)
        check_signature(data, sig, self.public_key, _join(self.url, vdir))
        manifest = parse_manifest(data, _join(self.url, vdir))
        if manifest.version != version:
            raise BundleError(_join(self.url, vdir), "bad_manifest", f"manifest says version {manifest.version}")
        return manifest, data, sig

    # -- one pull ------------------------------------------------------------------
    def pull_once(self, raise_errors: bool = False) -> bool:
        """Check for a new version and install it. True when a new bundle became current."""
        try:
            swapped = self._pull()
            self.last_error = None
            return swapped
        except SyncError as err:
            self.last_error = str(err)
            log.warning("sync.unreachable", url=self.url, error=str(err), keeping=str(self.store.current_dir()))
            if raise_errors:
                raise
        except BundleError as err:
            self.last_error = str(err)
            log.error(
                "sync.rejected", url=self.url, reason=err.reason, error=str(err), keeping=str(self.store.current_dir())
            )
            if raise_errors:
                raise
        return False

    def _pull(self) -> bool:
        state = self.store.load_state()
        headers = {}
        if state.get("url") == self.url and self.store.current_dir() is not None:
            if state.get("etag"):
                headers["If-None-Match"] = state["etag"]
            if state.get("last_modified"):
                headers["If-Modified-Since"] = state["last_modified"]
        url = _join(self.url, MANIFEST)
        resp = self._fetch(url, MAX_MANIFEST_BYTES, headers)
        if resp.status == 304:
            log.debug("sync.unchanged", url=self.url)
            return False
        top = resp.body
        validators = {"etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}
        try:
            version = int(json.loads(top)["version"])
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: hostile nesting
            raise BundleError(url, "bad_manifest", "top-level manifest.json has no integer version") from None

        self.published_version = version
        state = {"url": self.url, **validators, "published_version": version, "checked_at": _now()}
        pin = self.store.pinned()
        current = self.store.current_manifest()
        if pin is not None and current is not None:
            if version > current.version:
                log.warning(
                    "sync.pinned",
                    url=self.url,
                    offered=version,
                    current=current.version,
                    pinned_since=pin.get("at"),
                    why=f"pinned by {pin.get('reason') or 'an operator'}: `lookout sync unpin` to install newer versions",
                )
            self.store.save_state({**state, "etag": None, "last_modified": None})
            return False
        if current is not None and version <= current.version:
            if version < current.version:
                log.warning(
                    "sync.older_version",
                    url=self.url,
                    offered=version,
                    current=current.version,
                    why="refusing to go back a version",
                )
            self.store.save_state(state)
            return False

        manifest, data, sig = self._signed_manifest(version, top)
        gallery_id, purpose = self._binding(current)
        check_binding(manifest, gallery_id, purpose, url)
        check_model(manifest, self.expected_model_digest, url)
        staged = None
        if current is not None:
            try:
                staged = self._stage_deltas(current, manifest, data, sig)
            except (BundleError, SyncError) as err:
                log.warning("sync.delta_failed", url=self.url, error=str(err), fallback="full download")
                staged = None
        if staged is None:
            staged = self._stage_full(manifest, data, sig)
        try:
            verify_bundle(
                staged,
                self.public_key,
                self.expected_model_digest,
                self.policy,
                self.location,
                gallery_id=gallery_id,
                purpose=purpose,
            )
        except BundleError:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        final = self.store.install(staged, manifest.version)
        if self.public_key is not None:  # search on the store checks the signature again with it
            self.store.remember_key(public_pem(load_public_key(self.public_key)))
        self.store.save_state(state)
        log.info(
            "sync.swapped",
            url=self.url,
            version=manifest.version,
            bundle=str(final),
            previous=str(self.store.previous_dir()),
        )
        if self.on_swap is not None:
            self.on_swap(final)
        return True

    def _binding(self, current: Manifest | None) -> tuple[str | None, str | None]:
        """The gallery id and purpose a new bundle must have: as configured, else those of the bundle held (a
        store installs one gallery's line; one built before gallery ids binds to nothing but its purpose)."""
        if current is None:
            return self.gallery_id, self.purpose
        return self.gallery_id or current.gallery_id, self.purpose or current.purpose

    def _stage_full(self, manifest: Manifest, data: bytes, sig: bytes) -> Path:
        staged = self.store.new_staging()
        try:
            for name, entry in sorted(manifest.files.items()):
                self._download(f"v/{manifest.version}/{name}", staged / name, entry.size)
            (staged / MANIFEST).write_bytes(data)
            (staged / SIGNATURE).write_bytes(sig)
            check_files(staged, manifest.files)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        log.info(
            "sync.downloaded", kind="full", version=manifest.version, bytes=sum(e.size for e in manifest.files.values())
        )
        return staged

    def _stage_deltas(self, current: Manifest, latest: Manifest, data: bytes, sig: bytes) -> Path | None:
        """Apply the chain of deltas current -> latest in staging; None when there is no usable chain."""
        if latest.version - current.version > MAX_DELTA_CHAIN:
            return None
        chain: list[tuple[Manifest, bytes, bytes]] = []
        for v in range(current.version + 1, latest.version):
            chain.append(self._signed_manifest(v))
        chain.append((latest, data, sig))
        current_dir = self.store.current_dir()
        if current_dir is None:
            return None
        base_sha = manifest_sha256(current_dir)
        steps: list[tuple[Manifest, DeltaInfo, bytes, bytes]] = []
        for m, mdata, msig in chain:
            if m.delta is None or m.delta.base_manifest_sha256 != base_sha:
                return None
            steps.append((m, m.delta, mdata, msig))
            base_sha = sha256_bytes(mdata)
        total = sum(sum(e.size for e in delta.files.values()) for _m, delta, _d, _s in steps)
        if total >= sum(e.size for e in latest.files.values()):
            return None
        base_dir, base_manifest = current_dir, current
        stages: list[Path] = []
        try:
            for m, delta, mdata, msig in steps:
                staged = self.store.new_staging()
                stages.append(staged)
                for name, entry in sorted(delta.files.items()):
                    self._download(f"v/{m.version}/{name}", staged / name, entry.size)
                check_files(staged, delta.files)
                doc, vectors = read_delta(staged)
                if doc.from_version != base_manifest.version or doc.to_version != m.version:
                    raise BundleError(
                        staged,
                        "bad_delta",
                        f"delta {doc.from_version}->{doc.to_version} "
                        f"does not lead {base_manifest.version}->{m.version}",
                    )
                apply_delta(base_dir, base_manifest, doc, vectors, staged)
                self._download(f"v/{m.version}/{POLICY}", staged / POLICY, m.files[POLICY].size)
                (staged / MANIFEST).write_bytes(mdata)
                (staged / SIGNATURE).write_bytes(msig)
                check_files(staged, m.files)  # the rebuilt index and metadata are exactly the published ones
                base_dir, base_manifest = staged, m
            for d in stages[:-1]:
                shutil.rmtree(d, ignore_errors=True)
        except BaseException:
            for d in stages:
                shutil.rmtree(d, ignore_errors=True)
            raise
        log.info("sync.downloaded", kind="delta", steps=len(chain), version=latest.version, bytes=total)
        return stages[-1]

    # -- background ----------------------------------------------------------------
    def start(self) -> None:
        """Pull now and then every ``interval_s`` seconds in a daemon thread (backing off after failures)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bundle-puller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.pull_once()
            except Exception as err:
                self.last_error = str(err)
                log.error("sync.failed", url=self.url, error=repr(err))
            failures = failures + 1 if self.last_error else 0
            wait = self.interval_s if not failures else min(self.interval_s * 2 ** min(failures - 1, 4), 3600)
            self._stop.wait(wait)
