"""Event emission: a decision becomes a signed-off ``MatchEvent`` in the durable outbox, counted and timed.

Only decided matches reach this module; the crop it encodes is the best-quality face of
the matched track, and only where both the config and the policy allow crops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np
from pydantic import ValidationError

from lookout.device.config import DeviceConfig
from lookout.device.decision import Decision
from lookout.device.homeassistant import OUTBOX_ID_PREFIX, HomeAssistantDiscovery
from lookout.device.outbox import DROPPED_WITHDRAWN, Outbox, OutboxRow
from lookout.device.status import Metrics
from lookout.device.tuning import Tuning
from lookout.events import Location, MatchEvent, ModelRef
from lookout.face.types import Face
from lookout.gallery.reader import GalleryReader
from lookout.identifiers import shorten
from lookout.log import get_logger
from lookout.topics import Topics

log = get_logger(__name__)


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


class Deliveries:
    """When each event's frame was grabbed, so the broker's acknowledgement gives frame-to-publish latency."""

    def __init__(self, metrics: Metrics, outbox: Outbox) -> None:
        self.metrics = metrics
        self.outbox = outbox
        self._captured: dict[str, float] = {}
        self._lock = threading.Lock()

    def queued(self, event_id: str, captured: float) -> None:
        with self._lock:
            self._captured[event_id] = captured

    def delivered(self, row: OutboxRow, ack_time: float) -> None:
        """The outbox sender's callback: the broker has the event."""
        if row.event_id.startswith(OUTBOX_ID_PREFIX):  # Home Assistant's copy of a match: not an event of its own
            return
        self.metrics.events_delivered += 1
        with self._lock:
            captured = self._captured.pop(row.event_id, None)
        if captured is not None:
            self.metrics.publish_latency.append((time.monotonic() - captured) * 1000)
        try:
            self.metrics.outbox_depth = self.outbox.count()
        except Exception as err:  # the outbox may be closing at shutdown: a gauge is not worth a crash
            log.debug("outbox.depth_unavailable", error=str(err))
        log.debug("event.delivered", event_id=row.event_id)

    def dropped(self, reason: str, event_ids: list[str]) -> None:
        """The outbox's callback: events dropped unsent (Home Assistant copies are not events of their own)."""
        count = sum(1 for event_id in event_ids if not event_id.startswith(OUTBOX_ID_PREFIX))
        if count:
            self.metrics.dropped(reason, count)
        with self._lock:
            for event_id in event_ids:
                self._captured.pop(event_id, None)

    def stale(self, row: OutboxRow) -> None:
        """The sender's callback: an event sent after its expiry."""
        if not row.event_id.startswith(OUTBOX_ID_PREFIX):
            self.metrics.events_stale += 1


class EventEmitter:
    """Decision -> MatchEvent -> outbox (then wakes the sender), with the device's metrics."""

    def __init__(
        self,
        cfg: DeviceConfig,
        topics: Topics,
        metrics: Metrics,
        outbox: Outbox,
        deliveries: Deliveries,
        wake_sender: Callable[[], None],
        tuning: Tuning,
        crops_allowed: bool,
        homeassistant: HomeAssistantDiscovery | None = None,
        holds: Callable[[str, tuple[str, ...], tuple[str, ...]], bool | None] | None = None,
    ) -> None:
        """``homeassistant``: when discovery is on, each match also goes out as a Home Assistant event
        (through the outbox, so it survives an outage too, and expires with the match).
        ``holds(person_id, photo_ids)``: whether the gallery in use still holds that person and those photos; a
        decision made on the previous gallery (the frame in flight at a swap) resting on a withdrawal is dropped."""
        self.cfg = cfg
        self.homeassistant = homeassistant
        self.topics = topics
        self.metrics = metrics
        self.outbox = outbox
        self.deliveries = deliveries
        self.wake_sender = wake_sender
        self.tuning = tuning
        self.crops_allowed = crops_allowed
        self.holds = holds
        self.emitted_ids: list[str] = []  # this run's event ids, in order (tests, bench)

    @property
    def events_emitted(self) -> int:
        return len(self.emitted_ids)

    def emit(self, decision: Decision, gallery: GalleryReader, seen_at: float, captured: float) -> None:
        """``seen_at``: the frame's time (epoch seconds); ``captured``: when it was grabbed (monotonic)."""
        cfg = self.cfg
        digests = gallery.photo_sha256(decision.photo_ids) if decision.photo_ids else ()
        if self.holds is not None and self.holds(decision.person_id, decision.photo_ids, digests) is False:
            self.metrics.dropped(DROPPED_WITHDRAWN)
            log.info(
                "event.withdrawn_dropped",
                bundle=str(gallery.version),
                why="decided on the previous gallery; the gallery now in use no longer holds this person",
            )
            return
        try:
            event = self._event(decision, gallery, seen_at)
        except ValidationError as err:
            # A gallery from an older builder may hold an id no event can carry (issue 12 item 1). The match
            # cannot be sent; the device must not die at every sighting of that person either.
            self.metrics.events_unencodable += 1
            self.metrics.dropped("unencodable")
            log.error(
                "event.unencodable",
                person_id=shorten(decision.person_id),
                bundle=str(gallery.version),
                reason="; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:3]),
                effect="match not sent; the device goes on (rebuild the gallery: the builder now refuses such ids)",
            )
            return
        event_id = str(event.event_id)
        person_id = decision.person_id
        self.outbox.add(
            event_id,
            self.topics.match(cfg.device_id),
            event.to_json(),
            event.expires_at.timestamp(),
            time.time(),
            person_id=person_id,
            photo_ids=decision.photo_ids,
            photo_sha256=digests,
        )
        if self.homeassistant is not None:
            payload = self.homeassistant.event_payload(
                event_id=event_id,
                person_id=decision.person_id,
                name=decision.name,
                score=event.score,
                seen_at=event.seen_at,
                location=cfg.location.name,
            )
            expires = event.expires_at.timestamp()
            self.outbox.add(
                OUTBOX_ID_PREFIX + event_id,
                self.homeassistant.event_topic,
                payload,
                expires,
                time.time(),
                person_id=person_id,
                photo_ids=decision.photo_ids,
                photo_sha256=digests,
                sequenced=False,  # the relay never sees this copy: numbering it would read as a lost event there
            )
        self.deliveries.queued(event_id, captured)
        self.wake_sender()
        latency = (time.monotonic() - captured) * 1000
        self.metrics.decision_latency.append(latency)
        self.metrics.decisions += 1
        self.metrics.outbox_depth = self.outbox.count()
        self.emitted_ids.append(event_id)
        log.info(
            "match",
            event_id=event_id,
            person_id=decision.person_id,
            score=round(decision.score, 3),
            margin=round(decision.margin, 3),
            votes=decision.votes,
            track=decision.track_id,
            track_length=decision.track_length,
            ms=round(latency, 1),
        )

    def _event(self, decision: Decision, gallery: GalleryReader, seen_at: float) -> MatchEvent:
        cfg = self.cfg
        return MatchEvent.create(
            ttl=timedelta(seconds=cfg.events.ttl_s),
            crop_jpeg=self._crop(decision),
            seen_at=datetime.fromtimestamp(seen_at, timezone.utc),
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
            location=self._location(),
        )

    def _crop(self, decision: Decision) -> bytes | None:
        if not (self.tuning.crop and self.crops_allowed and decision.crop is not None):
            return None
        return encode_crop(decision.crop, self.cfg.events.crop_px, self.cfg.events.crop_max_bytes)

    def _location(self) -> Location | None:
        loc = self.cfg.location
        if loc.name or loc.lat is not None or loc.lon is not None:
            return Location(name=loc.name, lat=loc.lat, lon=loc.lon)
        return None
