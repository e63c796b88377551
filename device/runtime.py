"""The device's lifecycle: start the parts in order, wire them, stop them cleanly.

The work is done by units with one job each:

- ``gallery_swap.GallerySwap``  load and verify the gallery, swap in new bundles (puller or store watcher)
- ``frame_loop.FrameLoop``      the per-frame pipelining: detection of t+1 overlapping embedding of t
- ``emitter.EventEmitter``      decision -> MatchEvent -> durable outbox, with the metrics
- ``outbox.OutboxSender``, ``status.StatusReporter``, the frame grabber, the metrics server

``Runtime`` checks the policy, opens the source and the models, assembles those units for
one run (a ``Session``), starts their threads, runs the loop and stops everything in
reverse order on a signal, at the end of the source, or on an error.

Jurisdiction: recognition needs a declared location (``location.jurisdiction``): with
none the device could be in Illinois by accident, so it refuses to start recognition,
whatever the policy says about unknown jurisdictions. Where the policy denies recognition
at the device's location, it refuses too and says why (``recognition.enabled: false`` runs
detection and tracking only, for counting).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from lookout.device.config import DeviceConfig
from lookout.device.cooldown import Cooldown
from lookout.device.decision import Decider
from lookout.device.emitter import Deliveries, EventEmitter
from lookout.device.frame_loop import Clock, FrameLoop
from lookout.device.gallery_swap import GallerySwap, gallery_holds
from lookout.device.homeassistant import HomeAssistantDiscovery
from lookout.device.outbox import Outbox, OutboxRow, OutboxSender
from lookout.device.publisher import EventPublisher, PahoPublisher
from lookout.device.sources import FrameGrabber, FrameSource, open_source
from lookout.device.status import Metrics, StatusReporter, last_will
from lookout.device.threshold_guard import judge
from lookout.device.tuning import Tuning
from lookout.errors import LookoutError
from lookout.face.detector import DetectorConfig
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.gallery.policy import Policy
from lookout.gallery.reader import GalleryReader
from lookout.log import get_logger
from lookout.memory import release_freed_memory
from lookout.metrics_server import MetricsServer
from lookout.topics import Topics

log = get_logger(__name__)


class RecognitionRefused(LookoutError):
    """The policy does not allow face recognition where this device is."""


class SourceFailed(LookoutError):
    """The camera or stream stayed unavailable longer than ``source.give_up_after_s``."""


def load_policy(cfg: DeviceConfig) -> Policy:
    return Policy.load(cfg.gallery.policy) if cfg.gallery.policy else Policy.default()


NO_LOCATION = (
    "location.jurisdiction is not set: face recognition needs the device's declared location (an unknown "
    "jurisdiction is denied: it could be Illinois, where BIPA forbids it). Set it in the config, e.g. "
    "`location.jurisdiction: US-CA` (or --set location.jurisdiction=US-CA), or set recognition.enabled: false "
    "to run detection and tracking only."
)


def check_jurisdiction(cfg: DeviceConfig, policy: Policy) -> str:
    """The policy's reason when recognition is allowed; RecognitionRefused saying why when not.
    No declared location is refused whatever the policy says: a device must know where it is."""
    if cfg.location.jurisdiction is None:
        raise RecognitionRefused(NO_LOCATION)
    decision = policy.decide(cfg.location.jurisdiction, cfg.purpose)
    if not decision.allowed:
        where = cfg.location.jurisdiction or "an unknown jurisdiction"
        raise RecognitionRefused(
            f"face recognition is not allowed where this device is ({where}, purpose {cfg.purpose}): "
            f"{decision.reason}. Recognition will not start. To count faces without recognising anyone, "
            f"set recognition.enabled: false."
        )
    return decision.reason


@dataclass
class Session:
    """Everything one run starts, in start order; stopped in reverse by ``Runtime``."""

    grabber: FrameGrabber
    outbox: Outbox
    publisher: EventPublisher
    reporter: StatusReporter
    sender: OutboxSender
    emitter: EventEmitter
    loop: FrameLoop
    metrics_server: MetricsServer | None
    homeassistant: HomeAssistantDiscovery | None = None


class Runtime:
    def __init__(
        self,
        cfg: DeviceConfig,
        *,
        publisher: EventPublisher | None = None,
        pipeline: FacePipeline | None = None,
        on_ready: Callable[[Runtime], None] | None = None,
        source: FrameSource | None = None,
    ) -> None:
        """``publisher``/``pipeline``/``source``: given ones instead of MQTT, the configured models and the
        configured source (tests, bench: a camera whose frames tell their capture time).
        ``on_ready`` is called once, from the loop's thread, when frames are being processed with the
        models loaded and (if recognition is on) a gallery in use: what a supervisor waits for."""
        self.cfg = cfg
        self.topics = Topics(cfg.mqtt.topic_prefix)
        self.metrics = Metrics()
        self.clock = Clock(cfg.clock)
        self.ready = threading.Event()
        self.started = threading.Event()
        self.recognition = cfg.recognition.enabled
        self.policy = load_policy(cfg)
        self.crops_allowed = self.policy.crops_allowed(cfg.location.jurisdiction, cfg.purpose)
        self.tuning = Tuning.from_config(cfg)
        rec = cfg.recognition
        self.decider = Decider(
            k=rec.k,
            n=rec.n,
            min_margin=rec.min_margin,
            cooldown=Cooldown(cfg.events.cooldown_s),
            embed_every=rec.embed_every,
            slow_embed_every=rec.slow_embed_every,
        )
        self._stop = threading.Event()
        self.galleries = GallerySwap(cfg, self.policy, self.metrics)
        self.session: Session | None = None
        self.models_loaded = False
        self.metrics_server: MetricsServer | None = None  # /metrics, /healthz, /readyz (status.metrics_port)
        self._publisher = publisher
        self._pipeline = pipeline
        self._source = source
        self._on_ready = on_ready
        self._old_handlers: dict[int, Any] = {}

    # -- what callers look at --------------------------------------------------------------
    @property
    def gallery(self) -> GalleryReader | None:
        return self.galleries.current

    @property
    def outbox(self) -> Outbox | None:
        return self.session.outbox if self.session else None

    @property
    def emitted_ids(self) -> list[str]:
        """This run's event ids, in order (tests, bench)."""
        return self.session.emitter.emitted_ids if self.session else []

    @property
    def events_emitted(self) -> int:
        return len(self.emitted_ids)

    def on_swap(self, bundle_dir: Any) -> None:
        """A new bundle is installed: verified and loaded now, searched from the next frame."""
        self.galleries.on_swap(bundle_dir)

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """For ``/readyz``: models loaded, frames flowing (not while the source is away) and, if recognition is on,
        a gallery in use;
        events go to the broker (or wait in the outbox while it is away: not ready)."""
        publisher = self.session.publisher if self.session else None
        grabber = self.session.grabber if self.session else None
        checks: dict[str, object] = {
            "models": self.models_loaded,
            "processing": self.ready.is_set() and grabber is not None and grabber.available,
            "gallery": self.gallery is not None or not self.recognition,
            "broker_connected": bool(publisher is not None and publisher.connected),
        }
        return all(bool(v) for v in checks.values()), checks

    # -- control -----------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        if not self._stop.is_set():
            log.info("device.stopping", reason="signal")
        self._stop.set()

    def apply_live(self, *, threshold: float | None, min_margin: float, cooldown_s: float, crop: bool) -> None:
        """Settings that may change while running (a Greengrass configuration update): from the next frame.
        ``threshold=None`` means the gallery's own (calibrated) threshold. A threshold predicted far above the
        gallery's target is not applied unless ``recognition.accept_fpir`` (the other settings are)."""
        cfg = self.cfg
        gallery = self.gallery
        if threshold is not None and gallery is not None:
            refusal = judge(threshold, gallery).refusal(cfg.recognition.accept_fpir, cfg.recognition.accept_fnir)
            if refusal:
                log.error(
                    "config.live_threshold_refused", threshold=threshold, why=refusal, keeping=self.tuning.threshold
                )
                threshold = self.tuning.threshold
        self.cfg = cfg.model_copy(
            update={
                "recognition": cfg.recognition.model_copy(update={"threshold": threshold, "min_margin": min_margin}),
                "events": cfg.events.model_copy(update={"cooldown_s": cooldown_s, "crop": crop}),
            }
        )
        self.tuning.threshold, self.tuning.crop = threshold, crop
        if gallery is not None:
            verdict = judge(threshold, gallery)
            self.metrics.threshold, self.metrics.predicted_fpir = verdict.threshold, verdict.predicted_fpir
        self.decider.min_margin = min_margin
        self.decider.cooldown.seconds = cooldown_s
        log.info("config.live_update", threshold=threshold, min_margin=min_margin, cooldown_s=cooldown_s, crop=crop)

    # -- run ---------------------------------------------------------------------------------
    def run(self) -> int:
        self._announce()
        self._check_policy()
        grabber = self._open_source()  # a missing or corrupt file is reported before the models load
        # /healthz answers from here on, /readyz says what is still missing while models and gallery load.
        metrics_server = self._serve_metrics()
        try:
            pipeline = self._open_pipeline()
            self.models_loaded = True
            if self.recognition:
                self.galleries.open(pipeline.embedder.digest)
                self._note_precision(pipeline)
                if self.gallery is not None:
                    self._judge_threshold(self.gallery, at_start=True)
            release_freed_memory()  # model weights read and repacked, gallery metadata read and compacted
        except BaseException:
            if metrics_server is not None:
                metrics_server.stop()
            raise
        self.metrics.recognition = "on" if self.recognition else "off"
        session = self.session = self._assemble(grabber, pipeline, metrics_server)
        if self.recognition:
            self.galleries.on_swapped = self._gallery_arrives
            if self.gallery is not None:  # the outbox may hold events of people withdrawn while the device was off
                self._drop_withdrawn(self.gallery)
        self._install_signals()
        try:
            self._start(session)
            session.loop.run(grabber)
            if grabber.error:
                raise SourceFailed(grabber.error)
            return 0
        finally:
            self._shutdown(session)

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

    def _check_policy(self) -> None:
        cfg = self.cfg
        if cfg.events.crop and not self.crops_allowed:
            log.info("policy.no_crops", jurisdiction=cfg.location.jurisdiction, effect="events carry no face image")
        if self.recognition:
            reason = check_jurisdiction(cfg, self.policy)
            log.info("policy.allows", jurisdiction=cfg.location.jurisdiction, purpose=cfg.purpose, why=reason)
        else:
            log.warning("recognition.disabled", mode="detection and tracking only; nobody is recognised")

    def _open_source(self) -> FrameGrabber:
        src = self.cfg.source
        source = self._source or open_source(
            src.url,
            src.kind,
            fps=src.fps,
            loop=src.loop,
            width=src.width,
            height=src.height,
            max_pixels=src.max_pixels,
        )
        return FrameGrabber(
            source,
            realtime=True if src.realtime is None else src.realtime,
            backoff=(src.reopen.initial_s, src.reopen.max_s),
            give_up_after_s=src.give_up_after_s,
        ).open()

    def _open_pipeline(self) -> FacePipeline:
        if self._pipeline is not None:
            return self._pipeline
        m = self.cfg.models
        return FacePipeline.open(
            PipelineConfig(
                model_dir=m.model_dir,
                device=m.device,
                detector=m.detector,
                embedder=m.embedder,
                detection=DetectorConfig(score_threshold=m.detection_threshold, tile=m.tile, retry_padded=False),
                quality=self.cfg.quality.gates(),
                embed_batch=self.cfg.recognition.max_batch,
                precision=m.precision,
            )
        )

    def _serve_metrics(self) -> MetricsServer | None:
        cfg = self.cfg
        if cfg.status.metrics_port is None:
            return None
        server = MetricsServer(
            lambda: self.metrics.prometheus(cfg.device_id),
            cfg.status.metrics_host,
            cfg.status.metrics_port,
            readiness=self.readiness,
        )
        server.start()
        self.metrics_server = server
        return server

    def _assemble(self, grabber: FrameGrabber, pipeline: FacePipeline, metrics_server: MetricsServer | None) -> Session:
        """Make this run's parts, each with what it needs, in an order with no cycle."""
        cfg = self.cfg
        outbox = Outbox(cfg.outbox.path, cfg.outbox.max_events)
        waiting = outbox.count()
        if waiting:
            log.info("outbox.resume", events=waiting, hint="sent oldest first once the broker is reachable")
        status_topic = self.topics.status(cfg.device_id)
        publisher = self._publisher or PahoPublisher(
            cfg.mqtt,
            client_id=cfg.mqtt.client_id or f"lookout-{cfg.device_id}",
            will=last_will(cfg.device_id, status_topic, self.metrics),
        )
        reporter = StatusReporter(
            publisher,
            self.metrics,
            device_id=cfg.device_id,
            status_topic=status_topic,
            heartbeat_topic=self.topics.heartbeat(cfg.device_id),
            heartbeat_s=cfg.status.heartbeat_s,
        )
        homeassistant = None
        if cfg.homeassistant.enabled:
            homeassistant = HomeAssistantDiscovery(
                cfg.homeassistant,
                device_id=cfg.device_id,
                device_name=cfg.device_name,
                area=cfg.location.name,
                status_topic=status_topic,
                event_topic=self.topics.homeassistant_event(cfg.device_id),
                publisher=publisher,
            )
        deliveries = Deliveries(self.metrics, outbox)
        outbox.on_dropped = deliveries.dropped
        sender = OutboxSender(
            outbox,
            publisher,
            inflight=cfg.outbox.inflight,
            retry_s=cfg.outbox.resend_s,
            on_delivered=deliveries.delivered,
            admit=self._admit if self.recognition else None,
            on_stale=deliveries.stale,
        )
        emitter = EventEmitter(
            cfg,
            self.topics,
            self.metrics,
            outbox,
            deliveries,
            sender.wake,
            self.tuning,
            self.crops_allowed,
            homeassistant,
            holds=self.galleries.holds if self.recognition else None,
        )
        loop = FrameLoop(
            cfg,
            pipeline,
            self.galleries,
            self.decider,
            self.tuning,
            self.metrics,
            self.clock,
            recognition=self.recognition,
            on_decision=emitter.emit,
            on_ready=self._frame_ready,
            stop=self._stop,
        )
        return Session(grabber, outbox, publisher, reporter, sender, emitter, loop, metrics_server, homeassistant)

    def _start(self, s: Session) -> None:
        def connected() -> None:
            s.reporter.online()
            if s.homeassistant is not None:
                s.homeassistant.announce()
            s.sender.wake()

        s.publisher.on_connect = connected
        if s.homeassistant is not None:
            s.homeassistant.start()  # listens for Home Assistant's birth message from the first connection
        s.grabber.start()
        s.publisher.start()
        if not s.publisher.owns_connection:
            s.reporter.online()
            if s.homeassistant is not None:
                s.homeassistant.announce()
        s.sender.start()
        s.reporter.start()
        if self.recognition:
            self.galleries.start()
        cfg = self.cfg
        log.info(
            "device.started",
            device_id=cfg.device_id,
            source=s.grabber.source.name,
            recognition=self.recognition,
            bundle=self.metrics.bundle_version,
            embed=cfg.recognition.embed,
            precision=s.loop.pipeline.embedder.precision,
            precision_why=s.loop.pipeline.precision_note,
            mqtt=f"{cfg.mqtt.host}:{cfg.mqtt.port}",
        )
        self.started.set()

    def _note_precision(self, pipeline: FacePipeline) -> None:
        gallery = self.gallery
        if gallery is not None and gallery.manifest.model.precision != pipeline.embedder.precision:
            log.info(
                "gallery.cross_precision",
                gallery=gallery.manifest.model.precision,
                device=pipeline.embedder.precision,
                note="scores agree with FP32's within the tolerance `lookout models precision` checked",
            )

    def _admit(self, row: OutboxRow) -> bool | None:
        """The sender's question before a row goes out: nothing about a person the gallery in use no longer
        holds leaves the device; while no gallery is in use, rows about a person wait (cannot tell)."""
        return True if row.person_id is None else self.galleries.holds(row.person_id, row.photo_ids, row.photo_sha256)

    def _gallery_arrives(self, gallery: GalleryReader) -> None:
        """A new gallery comes into use (frame-loop thread, before its version shows)."""
        self._drop_withdrawn(gallery)
        self._judge_threshold(gallery, at_start=False)

    def _judge_threshold(self, gallery: GalleryReader, *, at_start: bool) -> None:
        """recognition.threshold under the rule of an operator's threshold (device/threshold_guard.py); the
        threshold in use and its predicted FPIR go to the metrics."""
        rec = self.cfg.recognition
        verdict = judge(self.tuning.threshold, gallery)
        refusal = verdict.refusal(rec.accept_fpir, rec.accept_fnir)
        if refusal:
            if at_start:
                raise RecognitionRefused(f"recognition.threshold {verdict.threshold:g}: {refusal}")
            log.error(
                "threshold.override_refused",
                threshold=verdict.threshold,
                bundle=str(gallery.version),
                why=refusal,
                effect="the gallery's own threshold is used",
            )
            self.tuning.threshold = None
            verdict = judge(None, gallery)
        elif verdict.problem or verdict.fnir_problem:
            log.warning("threshold.accepted", threshold=verdict.threshold, why=verdict.problem or verdict.fnir_problem)
        self.metrics.threshold, self.metrics.predicted_fpir = verdict.threshold, verdict.predicted_fpir
        log.info("threshold.in_use", bundle=str(gallery.version), threshold=verdict.describe())

    def _drop_withdrawn(self, gallery: GalleryReader) -> None:
        """A gallery came into use: delete what the outbox holds about anyone it no longer holds (crops too)."""
        if self.session is None:
            return
        dropped = self.session.outbox.drop_rows(
            lambda row: row.person_id is None or gallery_holds(gallery, row.person_id, row.photo_ids, row.photo_sha256)
        )
        if dropped:
            log.warning(
                "outbox.withdrawn_dropped",
                events=len(dropped),
                bundle=str(gallery.version),
                why="their person, or a photo their match rests on, is no longer in the gallery (withdrawn or "
                "removed): not sent, deleted",
            )

    def _frame_ready(self) -> None:
        if not self.ready.is_set():
            self.ready.set()
            if self._on_ready is not None:
                self._on_ready(self)

    def _shutdown(self, s: Session) -> None:
        s.grabber.stop()
        self.galleries.stop()
        s.reporter.stop()
        left = s.outbox.count()
        if left and self._stop.is_set() and s.publisher.connected:
            s.sender.flush(timeout=5.0)  # stopped by a signal: a short grace
        elif left and not self._stop.is_set():
            # The source ended: wait a while for the broker (a signal cuts this short).
            log.info("outbox.draining", events=left, up_to_s=self.cfg.outbox.flush_at_end_s)
            s.sender.flush(timeout=self.cfg.outbox.flush_at_end_s, abort=self._stop)
        left = s.outbox.count()
        s.sender.stop()
        if s.publisher.connected:
            s.reporter.offline()
        s.publisher.stop()
        s.outbox.close()
        if s.metrics_server is not None:
            s.metrics_server.stop()
        self._restore_signals()
        log.info(
            "device.stopped",
            frames=self.metrics.frames,
            events=self.events_emitted,
            outbox_left=left,
            hint="left events are sent at the next start" if left else "",
        )

    def _install_signals(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop()

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
