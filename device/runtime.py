"""The device loop: frames -> detection -> tracking -> embedding -> search -> decision -> events.

One thread runs the loop; around it: the frame grabber, the outbox sender, the MQTT
client's network thread, the heartbeat, the bundle puller. Per frame::

    start detection of frame t+1 (async)
    finish frame t: wait for its embeddings, search, decide, write events to the outbox
    finish detection of t+1, track, gate quality, start embedding the faces that need it

so the embedding of one frame overlaps the detection of the next.

Privacy: only decided matches leave the loop (as events in the outbox). Faces that
do not match leave nothing: their embeddings, scores and crops live in memory with
their track and are dropped with it; no frame is written to disk unless
``debug.save_frames_dir`` is set, which is announced at start-up in plain words.

Jurisdiction: where the policy denies recognition at the device's location, the
device refuses to start recognition and says why (``recognition.enabled: false``
runs detection and tracking only, for counting).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from lookout.device.config import DeviceConfig
from lookout.device.cooldown import Cooldown
from lookout.device.decision import Decider, Decision, Observation
from lookout.device.outbox import Outbox, OutboxSender
from lookout.device.publisher import EventPublisher, PahoPublisher
from lookout.device.recognizer import Recognizer
from lookout.device.sources import FrameGrabber, open_source
from lookout.device.status import Metrics, StatusReporter
from lookout.device.tracker import IouTracker, Track
from lookout.errors import ConfigError, LookoutError
from lookout.events import Location, MatchEvent, ModelRef
from lookout.face.detector import DetectorConfig
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.face.quality import QualityConfig, assess
from lookout.face.types import Face
from lookout.gallery.policy import Policy
from lookout.gallery.pull import BundlePuller
from lookout.gallery.reader import Gallery, GalleryReader, load_bundle
from lookout.gallery.store import BundleStore
from lookout.log import get_logger
from lookout.metrics_server import MetricsServer
from lookout.topics import Topics

log = get_logger(__name__)


class RecognitionRefused(LookoutError):
    """The policy does not allow face recognition where this device is."""


class SourceFailed(LookoutError):
    """The camera or stream stayed unavailable longer than ``source.give_up_after_s``."""


# -- pieces ----------------------------------------------------------------------------


class Clock:
    """Seconds since the epoch: wall time, or (``clock: video``) the start time plus the video's timestamps."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._anchor: float | None = None

    def at(self, pts: float) -> float:
        if self.mode == "wall":
            return time.time()
        if self._anchor is None:
            self._anchor = time.time() - pts
        return self._anchor + pts


def load_policy(cfg: DeviceConfig) -> Policy:
    return Policy.load(cfg.gallery.policy) if cfg.gallery.policy else Policy.default()


def check_jurisdiction(cfg: DeviceConfig, policy) -> str:
    """The policy's reason when recognition is allowed; RecognitionRefused saying why when not."""
    decision = policy.decide(cfg.location.jurisdiction, cfg.purpose)
    if not decision.allowed:
        where = cfg.location.jurisdiction or "an unknown jurisdiction"
        raise RecognitionRefused(
            f"face recognition is not allowed where this device is ({where}, purpose {cfg.purpose}): "
            f"{decision.reason}. Recognition will not start. To count faces without recognising anyone, "
            f"set recognition.enabled: false."
        )
    return decision.reason


def encode_crop(image: np.ndarray, max_side: int, max_bytes: int) -> bytes | None:
    """A JPEG of at most ``max_bytes``: lower quality, then smaller, until it fits."""
    h, w = image.shape[:2]
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        image = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    for _ in range(4):
        for quality in (85, 70, 50, 35):
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(buf) <= max_bytes:
                return buf.tobytes()
        image = cv2.resize(
            image, (max(1, image.shape[1] // 2), max(1, image.shape[0] // 2)), interpolation=cv2.INTER_AREA
        )
    return None


def face_crop(image: np.ndarray, face: Face, margin: float = 0.3) -> np.ndarray:
    x1, y1, x2, y2 = face.box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    h, w = image.shape[:2]
    a, b = int(max(0, x1 - mx)), int(max(0, y1 - my))
    c, d = int(min(w, x2 + mx)), int(min(h, y2 + my))
    return image[b:d, a:c].copy() if c > a and d > b else image[:1, :1].copy()


@dataclass
class _Work:
    """One frame between 'embedding started' and 'decided'."""

    frame: object
    now: float
    gallery: GalleryReader | None
    tracks: list[Track] = field(default_factory=list)
    pending: object | None = None
    started: float = 0.0


# -- the runtime -----------------------------------------------------------------------


class Runtime:
    def __init__(
        self,
        cfg: DeviceConfig,
        *,
        publisher: EventPublisher | None = None,
        pipeline: FacePipeline | None = None,
        on_ready: Callable[[Runtime], None] | None = None,
    ) -> None:
        """``on_ready`` is called once, from the loop's thread, when frames are being processed with the
        models loaded and (if recognition is on) a gallery in use: what a supervisor waits for."""
        self.cfg = cfg
        self._on_ready = on_ready
        self.ready = threading.Event()
        self.topics = Topics(cfg.mqtt.topic_prefix)
        self.metrics = Metrics()
        self.clock = Clock(cfg.clock)
        self._stop = threading.Event()
        self._publisher = publisher
        self._pipeline = pipeline
        self.gallery = None
        self._next_gallery = None
        self._gallery_lock = threading.Lock()
        self._bundle_dir: Path | None = None
        self._captured: dict[str, float] = {}  # event id -> frame grab time, for publish latency
        self.recognition = False
        self.events_emitted = 0
        self.emitted_ids: list[str] = []  # this run's event ids, in order (tests, bench)
        self.started = threading.Event()

    # -- control -----------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        if not self._stop.is_set():
            log.info("device.stopping", reason="signal")
        self._stop.set()

    def install_signals(self) -> None:
        self._old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old_handlers[sig] = signal.signal(sig, self.request_stop)

    def restore_signals(self) -> None:
        for sig, handler in getattr(self, "_old_handlers", {}).items():
            signal.signal(sig, handler)

    # -- gallery -----------------------------------------------------------------------
    def _load_gallery(self, bundle_dir: Path) -> Gallery:
        return load_bundle(
            bundle_dir,
            self.cfg.gallery.public_key,
            self._pipeline.embedder.digest,
            self.policy,
            location=self.cfg.location.jurisdiction,
        )

    def _initial_gallery(self):
        g = self.cfg.gallery
        if g.bundle_dir is not None:
            if not g.bundle_dir.is_dir():
                raise ConfigError(f"gallery.bundle_dir: {g.bundle_dir} is not a folder")
            self._bundle_dir = g.bundle_dir
            return self._load_gallery(g.bundle_dir)
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
            return None
        self._bundle_dir = current
        return self._load_gallery(current)

    def on_swap(self, bundle_dir: Path) -> None:
        """A new bundle is installed (puller thread, or the store watcher): load it, swap at the next frame."""
        try:
            gallery = self._load_gallery(Path(bundle_dir))
        except LookoutError as err:
            log.error(
                "gallery.swap_refused", bundle=str(bundle_dir), error=str(err), keeping=self.metrics.bundle_version
            )
            return
        with self._gallery_lock:
            self._next_gallery = gallery
            self._bundle_dir = Path(bundle_dir)

    def _watch_store(self) -> None:
        """Without a puller, notice bundles installed by `lookout sync pull` (the store's current link)."""
        while not self._stop.wait(5.0):
            current = self.store.current_dir()
            if current is not None and current != self._bundle_dir:
                self.on_swap(current)

    def _swap_if_ready(self) -> None:
        with self._gallery_lock:
            new, self._next_gallery = self._next_gallery, None
        if new is not None:
            old = self.metrics.bundle_version
            self.gallery = new
            self.metrics.bundle_version = str(new.version)
            log.info("gallery.swapped", old=old, new=new.version, persons=getattr(new, "count_persons", None))
        if not self.ready.is_set() and (self.gallery is not None or not self.recognition):
            self.ready.set()
            if self._on_ready is not None:
                self._on_ready(self)

    def apply_live(self, *, threshold: float | None, min_margin: float, cooldown_s: float, crop: bool) -> None:
        """Settings that may change while running (a Greengrass configuration update): from the next frame.
        ``threshold=None`` means the gallery's own (calibrated) threshold."""
        cfg = self.cfg
        self.cfg = cfg.model_copy(
            update={
                "recognition": cfg.recognition.model_copy(update={"threshold": threshold, "min_margin": min_margin}),
                "events": cfg.events.model_copy(update={"cooldown_s": cooldown_s, "crop": crop}),
            }
        )
        decider = getattr(self, "decider", None)  # exists once the loop runs
        if decider is not None:
            decider.min_margin = min_margin
            decider.cooldown.seconds = cooldown_s
        log.info("config.live_update", threshold=threshold, min_margin=min_margin, cooldown_s=cooldown_s, crop=crop)

    def readiness(self, publisher: EventPublisher) -> tuple[bool, dict[str, object]]:
        """For ``/readyz``: frames flowing with the models loaded and, if recognition is on, a gallery in
        use; events go to the broker (or wait in the outbox while it is away: not ready)."""
        checks: dict[str, object] = {
            "processing": self.ready.is_set(),
            "gallery": self.gallery is not None or not self.recognition,
            "broker_connected": bool(publisher.connected),
        }
        return all(bool(v) for v in checks.values()), checks

    # -- start-up ---------------------------------------------------------------------
    def _announce(self) -> None:
        cfg = self.cfg
        if cfg.debug.save_frames_dir:
            msg = (
                f"DEBUG OPTION ON: every processed camera frame will be saved as a JPEG in {cfg.debug.save_frames_dir}. "
                f"These images show people's faces, including people who are not enrolled. "
                f"Turn debug.save_frames_dir off for normal operation."
            )
            log.warning("privacy.frames_saved", message=msg)
            print(f"lookout: {msg}", flush=True, file=sys.stderr)
        else:
            log.info("privacy", frames_saved=False, unmatched_faces="not stored or sent")

    def _open_pipeline(self) -> FacePipeline:
        if self._pipeline is None:
            m, q = self.cfg.models, self.cfg.quality
            self._pipeline = FacePipeline.open(
                PipelineConfig(
                    model_dir=m.model_dir,
                    device=m.device,
                    detector=m.detector,
                    embedder=m.embedder,
                    detection=DetectorConfig(score_threshold=m.detection_threshold, tile=m.tile, retry_padded=False),
                    quality=QualityConfig(
                        min_size_px=q.min_size_px,
                        min_blur=q.min_blur,
                        max_abs_yaw=q.max_abs_yaw,
                        pitch_range=(q.pitch_min, q.pitch_max),
                    ),
                )
            )
        return self._pipeline

    def _make_publisher(self, status_topic_will: tuple) -> EventPublisher:
        if self._publisher is not None:
            return self._publisher
        return PahoPublisher(
            self.cfg.mqtt, client_id=self.cfg.mqtt.client_id or f"lookout-{self.cfg.device_id}", will=status_topic_will
        )

    # -- run ---------------------------------------------------------------------------
    def run(self) -> int:
        cfg = self.cfg
        self._announce()
        self.policy = load_policy(cfg)
        self.crops_allowed = self.policy.crops_allowed(cfg.location.jurisdiction, cfg.purpose)
        if cfg.events.crop and not self.crops_allowed:
            log.info("policy.no_crops", jurisdiction=cfg.location.jurisdiction, effect="events carry no face image")
        if cfg.recognition.enabled:
            reason = check_jurisdiction(cfg, self.policy)
            log.info("policy.allows", jurisdiction=cfg.location.jurisdiction, purpose=cfg.purpose, why=reason)
        else:
            log.warning("recognition.disabled", mode="detection and tracking only; nobody is recognised")
        grabber = FrameGrabber(
            open_source(
                cfg.source.url,
                cfg.source.kind,
                fps=cfg.source.fps,
                loop=cfg.source.loop,
                width=cfg.source.width,
                height=cfg.source.height,
            ),
            realtime=True if cfg.source.realtime is None else cfg.source.realtime,
            backoff=(cfg.source.reopen.initial_s, cfg.source.reopen.max_s),
            give_up_after_s=cfg.source.give_up_after_s,
        ).open()  # a missing or corrupt file is reported before the models load
        pipeline = self._open_pipeline()
        if cfg.recognition.enabled:
            self.gallery = self._initial_gallery()
            self.recognition = True
            if self.gallery is not None:
                self.metrics.bundle_version = str(self.gallery.version)
        self.metrics.recognition = "on" if self.recognition else "off"
        outbox = Outbox(cfg.outbox.path, cfg.outbox.max_events)
        self.outbox = outbox
        waiting = outbox.count()
        if waiting:
            log.info("outbox.resume", events=waiting, hint="sent oldest first once the broker is reachable")
        # The publisher needs the last will (from the reporter) before it exists; the reporter then gets it.
        reporter = StatusReporter(
            None,
            self.metrics,
            device_id=cfg.device_id,  # type: ignore[arg-type]
            status_topic=self.topics.status(cfg.device_id),
            heartbeat_topic=self.topics.heartbeat(cfg.device_id),
            heartbeat_s=cfg.status.heartbeat_s,
        )
        publisher = self._make_publisher(reporter.last_will())
        reporter.publisher = publisher
        sender = OutboxSender(
            outbox, publisher, inflight=cfg.outbox.inflight, retry_s=cfg.outbox.resend_s, on_delivered=self._delivered
        )
        self.sender = sender

        def connected() -> None:
            reporter.online()
            sender.wake()

        publisher.on_connect = connected
        metrics_server = None
        puller = None
        self.install_signals()
        try:
            grabber.start()
            publisher.start()
            if not publisher.owns_connection:
                reporter.online()
            sender.start()
            reporter.start()
            if cfg.status.metrics_port is not None:
                metrics_server = MetricsServer(
                    lambda: self.metrics.prometheus(cfg.device_id),
                    cfg.status.metrics_host,
                    cfg.status.metrics_port,
                    readiness=lambda: self.readiness(publisher),
                ).start()
            if cfg.recognition.enabled and cfg.gallery.store_dir is not None:
                if cfg.gallery.pull is not None:
                    puller = BundlePuller(
                        cfg.gallery.pull.url,
                        self.store,
                        cfg.gallery.public_key,
                        pipeline.embedder.digest,
                        self.policy,
                        cfg.gallery.pull.interval_s,
                        on_swap=self.on_swap,
                        location=cfg.location.jurisdiction,
                    )
                    puller.start()
                else:
                    threading.Thread(target=self._watch_store, name="bundle-watch", daemon=True).start()
            log.info(
                "device.started",
                device_id=cfg.device_id,
                source=grabber.source.name,
                recognition=self.recognition,
                bundle=self.metrics.bundle_version,
                embed=cfg.recognition.embed,
                mqtt=f"{cfg.mqtt.host}:{cfg.mqtt.port}",
            )
            self.started.set()
            self._loop(grabber, pipeline)
            if grabber.error:
                raise SourceFailed(grabber.error)
            return 0
        finally:
            self._shutdown(grabber, puller, sender, reporter, publisher, outbox, metrics_server)

    def _shutdown(self, grabber, puller, sender, reporter, publisher, outbox, metrics_server) -> None:
        grabber.stop()
        if puller is not None:
            puller.stop()
        reporter.stop()
        left = outbox.count()
        if left and self._stop.is_set() and publisher.connected:
            sender.flush(timeout=5.0)  # stopped by a signal: a short grace
        elif left and not self._stop.is_set():
            # The source ended: wait a while for the broker (a signal cuts this short).
            log.info("outbox.draining", events=left, up_to_s=self.cfg.outbox.flush_at_end_s)
            sender.flush(timeout=self.cfg.outbox.flush_at_end_s, abort=self._stop)
        left = outbox.count()
        sender.stop()
        if publisher.connected:
            reporter.offline()
        publisher.stop()
        outbox.close()
        if metrics_server is not None:
            metrics_server.stop()
        self.restore_signals()
        log.info(
            "device.stopped",
            frames=self.metrics.frames,
            events=self.events_emitted,
            outbox_left=left,
            hint="left events are sent at the next start" if left else "",
        )

    # -- the loop ---------------------------------------------------------------------
    def _loop(self, grabber: FrameGrabber, pipeline: FacePipeline) -> None:
        cfg = self.cfg
        self.recognizer = Recognizer(pipeline, max_batch=cfg.recognition.max_batch)
        self.tracker = IouTracker(cfg.tracking.iou_threshold, cfg.tracking.max_distance, cfg.tracking.max_missed)
        self.decider = Decider(
            k=cfg.recognition.k,
            n=cfg.recognition.n,
            min_margin=cfg.recognition.min_margin,
            cooldown=Cooldown(cfg.events.cooldown_s),
            embed_every=cfg.recognition.embed_every,
            slow_embed_every=cfg.recognition.slow_embed_every,
        )
        save_dir = cfg.debug.save_frames_dir
        if save_dir:
            save_dir.mkdir(parents=True, exist_ok=True)
        prev: _Work | None = None
        self._swap_if_ready()  # models loaded, publisher started: ready now if a gallery is in use
        while not self._stop.is_set():
            t0 = time.perf_counter()
            # Overlap the previous frame's embedding with this frame's detection only when a frame is
            # already waiting; otherwise finish the previous frame now rather than after the next arrives.
            frame = grabber.get(timeout=0) if prev is not None else None
            if frame is None:
                if prev is not None:
                    self._finish(prev)
                    prev = None
                    t0 = time.perf_counter()
                frame = grabber.get(timeout=0.2)
            if frame is None:
                if grabber.finished:
                    break
                continue
            self.metrics.stage("wait", (time.perf_counter() - t0) * 1000)
            self.metrics.dropped_frames = grabber.dropped
            self._swap_if_ready()
            t1 = time.perf_counter()
            detection = self.recognizer.start_detection(frame.image)
            if prev is not None:
                self._finish(prev)  # overlaps the detection just started
            faces = self.recognizer.finish_detection(detection)
            self.metrics.stage("detect", (time.perf_counter() - t1) * 1000)
            if save_dir:
                cv2.imwrite(str(save_dir / f"frame-{frame.index:08d}.jpg"), frame.image)
            prev = self._start(frame, faces)
        if prev is not None:
            self._finish(prev)
        self.tracker.end_all()  # tracks (and whatever they held in memory) are dropped here

    def _start(self, frame, faces: list[Face]) -> _Work:
        cfg = self.cfg
        now = self.clock.at(frame.pts)
        t0 = time.perf_counter()
        tracks, _ended = self.tracker.update([f.box for f in faces], frame.index)
        self.metrics.tracks_active = len(self.tracker.tracks)
        self.metrics.faces += len(faces)
        gallery = self.gallery
        work = _Work(frame, now, gallery, started=t0)
        self.metrics.stage("track", (time.perf_counter() - t0) * 1000)
        if not self.recognition or gallery is None or not faces:
            self._frame_done(work)
            return work
        t1 = time.perf_counter()
        every = cfg.recognition.embed == "all"
        order = sorted(range(len(faces)), key=lambda i: -faces[i].width)
        # wants_embedding also re-arms decided tracks whose cooldown is over, so ask it in both modes.
        wanted = [i for i in order if self.decider.wants_embedding(tracks[i], frame.index, now) or every]
        wanted = wanted[: cfg.recognition.max_faces]
        chosen, chips_out = [], []
        if wanted:
            chips = self.recognizer.align(frame.image, [faces[i] for i in wanted])
            for i, chip in zip(wanted, chips):
                quality = assess(faces[i], chip, self.recognizer.pipeline.quality_config)
                if not quality.ok:
                    continue
                track = tracks[i]
                self.decider.offer_crop(track, quality, lambda f=faces[i]: face_crop(frame.image, f))
                chosen.append(track)
                chips_out.append(chip)
        self.metrics.stage("align", (time.perf_counter() - t1) * 1000)
        if chosen:
            work.tracks = chosen
            work.pending = self.recognizer.start_embedding(np.stack(chips_out))
        else:
            self._frame_done(work)
        return work

    def _finish(self, work: _Work) -> None:
        if work.pending is None:
            return
        t0 = time.perf_counter()
        vectors = self.recognizer.finish_embedding(work.pending)
        t1 = time.perf_counter()
        self.metrics.stage("embed", (t1 - t0) * 1000)
        self.metrics.embedded += len(vectors)
        results = work.gallery.search(vectors, k=2)
        t2 = time.perf_counter()
        self.metrics.stage("search", (t2 - t1) * 1000)
        threshold = self.cfg.recognition.threshold
        if threshold is None:
            threshold = float(work.gallery.threshold)
        for track, candidates in zip(work.tracks, results):
            track.embeds += 1
            track.last_embed_frame = work.frame.index
            if candidates:
                top = candidates[0]
                second = candidates[1].score if len(candidates) > 1 else -1.0
                obs = Observation(work.frame.index, top.person_id, float(top.score), float(second), top.name)
            else:
                obs = Observation(work.frame.index, None, -1.0, -1.0)
            decision = self.decider.observe(track, obs, threshold, work.now)
            if decision is not None:
                self._emit(decision, work)
        self.metrics.stage("decide", (time.perf_counter() - t2) * 1000)
        work.pending = None
        self._frame_done(work)

    def _frame_done(self, work: _Work) -> None:
        self.metrics.frame_done((time.monotonic() - work.frame.captured) * 1000)

    # -- events -----------------------------------------------------------------------
    def _emit(self, decision: Decision, work: _Work) -> None:
        cfg, gallery = self.cfg, work.gallery
        crop = None
        if cfg.events.crop and self.crops_allowed and decision.crop is not None:
            crop = encode_crop(decision.crop, cfg.events.crop_px, cfg.events.crop_max_bytes)
        loc = cfg.location
        location = None
        if loc.name or loc.lat is not None or loc.lon is not None:
            location = Location(name=loc.name, lat=loc.lat, lon=loc.lon)
        seen_at = datetime.fromtimestamp(work.now, timezone.utc)
        event = MatchEvent.create(
            ttl=timedelta(seconds=cfg.events.ttl_s),
            crop_jpeg=crop,
            seen_at=seen_at,
            device_id=cfg.device_id,
            person_id=decision.person_id,
            score=float(np.clip(decision.score, -1, 1)),
            margin=decision.margin,
            track_length=max(1, decision.track_length),
            model=ModelRef(name=gallery.model_name, digest=gallery.model_digest),
            bundle_version=str(gallery.version),
            policy_version=str(gallery.policy_version),
            box=decision.box,
            device_name=cfg.device_name,
            location=location,
        )
        payload = event.to_json()
        self.outbox.add(
            str(event.event_id),
            self.topics.match(cfg.device_id),
            payload,
            event.expires_at.timestamp(),
            created_at=time.time(),
        )
        self.sender.wake()
        self._captured[str(event.event_id)] = work.frame.captured
        latency = (time.monotonic() - work.frame.captured) * 1000
        self.metrics.decision_latency.append(latency)
        self.metrics.decisions += 1
        self.metrics.outbox_depth = self.outbox.count()
        self.events_emitted += 1
        self.emitted_ids.append(str(event.event_id))
        log.info(
            "match",
            event_id=str(event.event_id),
            person_id=decision.person_id,
            score=round(decision.score, 3),
            margin=round(decision.margin, 3),
            votes=decision.votes,
            track=decision.track_id,
            track_length=decision.track_length,
            ms=round(latency, 1),
        )

    def _delivered(self, row, ack_time: float) -> None:
        self.metrics.events_delivered += 1
        captured = self._captured.pop(row.event_id, None)
        if captured is not None:
            self.metrics.publish_latency.append((time.monotonic() - captured) * 1000)
        with contextlib.suppress(Exception):
            self.metrics.outbox_depth = self.outbox.count()
        log.debug("event.delivered", event_id=row.event_id)
