"""The gallery the device searches: loaded and verified at start, swapped between frames.

A new bundle arrives from the puller (``gallery.pull``) or, without one, is noticed in
the store (``lookout sync pull`` run beside the device moves its ``current`` link). It is
verified and loaded in that thread; the frame loop takes it at its next frame
(``take``), so a frame is searched against one gallery from start to end. A bundle that
fails any check is refused with one log line, and the device keeps the one it has.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from lookout.device.config import DeviceConfig
from lookout.device.status import Metrics
from lookout.errors import ConfigError, LookoutError
from lookout.gallery.policy import Policy
from lookout.gallery.pull import BundlePuller
from lookout.gallery.reader import GalleryReader, load_bundle
from lookout.gallery.store import BundleStore
from lookout.log import get_logger
from lookout.memory import release_freed_memory

log = get_logger(__name__)

STORE_WATCH_S = 5.0


class GallerySwap:
    def __init__(self, cfg: DeviceConfig, policy: Policy, metrics: Metrics) -> None:
        self.cfg = cfg
        self.policy = policy
        self.metrics = metrics
        self._stopped = threading.Event()
        self.current: GalleryReader | None = None
        self.bundle_dir: Path | None = None
        self.store: BundleStore | None = None  # opened with the gallery (it creates its folders)
        self._embedder_digest: str | None = None
        self._next: GalleryReader | None = None
        self._lock = threading.Lock()
        self._puller: BundlePuller | None = None
        self._watcher: threading.Thread | None = None
        # Called (frame-loop thread) with each gallery taken into use: the runtime drops what waits in the
        # outbox about people it no longer holds.
        self.on_swapped: Callable[[GalleryReader], None] | None = None

    # -- start and stop ------------------------------------------------------------------
    def open(self, embedder_digest: str) -> None:
        """Load the configured bundle (or the store's current one); the embedder's digest must match it."""
        self._embedder_digest = embedder_digest
        g = self.cfg.gallery
        if g.bundle_dir is not None:
            if not g.bundle_dir.is_dir():
                raise ConfigError(f"gallery.bundle_dir: {g.bundle_dir} is not a folder")
            self._use(self._load(g.bundle_dir), g.bundle_dir)
            return
        if g.store_dir is None:
            raise ConfigError("gallery: set bundle_dir or store_dir")
        self.store = BundleStore(g.store_dir)
        current = self.store.current_dir()
        if current is None:
            if g.pull is None:
                raise ConfigError(
                    f"gallery.store_dir: {g.store_dir} holds no bundle yet (run `lookout sync pull`, "
                    f"or configure gallery.pull)"
                )
            log.warning(
                "gallery.none_yet", store=str(g.store_dir), hint="recognition starts when the first bundle arrives"
            )
            return
        self._use(self._load(current), current)

    def start(self) -> None:
        """Watch for new bundles: the puller when configured, else the store's ``current`` link."""
        g = self.cfg.gallery
        if self.store is None:
            return
        if g.pull is not None:
            self._puller = BundlePuller(
                g.pull.url,
                self.store,
                g.public_key,
                self._embedder_digest,
                self.policy,
                g.pull.interval_s,
                on_swap=self.on_swap,
                location=self.cfg.location.jurisdiction,
                gallery_id=g.gallery_id,
                purpose=self.cfg.bundle_purpose,
            )
            self._puller.start()
        else:
            self._watcher = threading.Thread(target=self._watch_store, name="bundle-watch", daemon=True)
            self._watcher.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._puller is not None:
            self._puller.stop()
        if self._watcher is not None:
            self._watcher.join(timeout=STORE_WATCH_S + 1)

    # -- swapping ------------------------------------------------------------------------
    def on_swap(self, bundle_dir: Path) -> None:
        """A new bundle is installed (puller thread, or the store watcher): load it, swap at the next frame."""
        try:
            gallery = self._load(Path(bundle_dir))
        except LookoutError as err:
            log.error(
                "gallery.swap_refused", bundle=str(bundle_dir), error=str(err), keeping=self.metrics.bundle_version
            )
            return
        with self._lock:
            self._next = gallery
            self.bundle_dir = Path(bundle_dir)

    def take(self) -> GalleryReader | None:
        """The gallery for the next frame: a newly arrived one if there is one, else the current one."""
        with self._lock:
            new, self._next = self._next, None
        if new is not None:
            old = self.metrics.bundle_version
            if self.on_swapped is not None:  # before the new version shows: nothing about the withdrawn is left then
                self.on_swapped(new)
            self._use(new, self.bundle_dir)
            log.info("gallery.swapped", old=old, new=new.version, persons=new.count_persons)
            release_freed_memory()  # the old gallery is gone: give its pages back
        return self.current

    def holds(self, person_id: str, photo_ids: tuple[str, ...] = (), photo_sha256: tuple[str, ...] = ()) -> bool | None:
        """Whether the gallery in use holds ``person_id`` and every one of ``photo_ids`` (a match resting on a
        withdrawn photo is void; one only renamed still counts, by ``photo_sha256``); None while no gallery is in
        use (cannot tell)."""
        current = self.current
        return None if current is None else gallery_holds(current, person_id, photo_ids, photo_sha256)

    def _use(self, gallery: GalleryReader, bundle_dir: Path | None) -> None:
        self.current = gallery
        self.bundle_dir = bundle_dir
        self.metrics.bundle_version = str(gallery.version)

    def _load(self, bundle_dir: Path) -> GalleryReader:
        return load_bundle(
            bundle_dir,
            self.cfg.gallery.public_key,
            self._embedder_digest,
            self.policy,
            location=self.cfg.location.jurisdiction,
            gallery_id=self.cfg.gallery.gallery_id,
            purpose=self.cfg.bundle_purpose,
        )

    def _watch_store(self) -> None:
        """Without a puller, notice bundles installed by `lookout sync pull` (the store's current link)."""
        assert self.store is not None
        while not self._stopped.wait(STORE_WATCH_S):
            current = self.store.current_dir()
            if current is not None and current != self.bundle_dir:
                self.on_swap(current)


def gallery_holds(
    gallery: GalleryReader, person_id: str, photo_ids: tuple[str, ...] = (), photo_sha256: tuple[str, ...] = ()
) -> bool:
    """``person_id`` is enrolled in ``gallery`` and each of ``photo_ids`` still counts there (enrolled, or the same
    content enrolled for that person under another id, and not in the withdrawal ledger)."""
    if gallery.person(person_id) is None:
        return False
    digests = photo_sha256 if len(photo_sha256) == len(photo_ids) else ("",) * len(photo_ids)
    return all(gallery.photo_still_enrolled(person_id, p, d) for p, d in zip(photo_ids, digests))
