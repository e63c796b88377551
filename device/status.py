"""What the device says about itself: retained status, heartbeat, Prometheus metrics.

- ``<prefix>/<device_id>/status`` (retained, QoS 1): ``online`` on every connection;
  ``offline`` as the MQTT last will (set when this process owns the connection) and
  on a clean stop. Under Greengrass, which owns the connection, only the latter two
  publishes happen (start and clean stop).
- ``<prefix>/<device_id>/heartbeat`` (QoS 0, every ``status.heartbeat_s``): fps,
  mean ms per stage, outbox depth, bundle version, uptime.
- ``status.metrics_port``: the same figures as Prometheus text on loopback, with ``/healthz`` and
  ``/readyz`` beside them (``lookout.metrics_server``).

Nothing here is about a particular face.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Literal

import numpy as np

from lookout import __version__
from lookout.device.publisher import EventPublisher
from lookout.events import DeviceStatus, Heartbeat, utc_now
from lookout.log import get_logger

log = get_logger(__name__)

STAGES = ("wait", "detect", "track", "align", "embed", "search", "decide")

# Why a match event was dropped unsent (lookout_events_dropped_total{reason}): the outbox was full (oldest
# dropped), its person was withdrawn (the gallery in use no longer holds them), the event schema refused it.
# Expired events are not dropped: they are sent, marked stale (lookout_events_stale_total).
DROP_REASONS = ("outbox_full", "withdrawn", "unencodable")


class Metrics:
    """Counters and rolling timings, written by the runtime thread, read by reporters."""

    def __init__(self, window: int = 200) -> None:
        self.started = time.monotonic()
        self.frames = 0
        self.faces = 0
        self.embedded = 0
        self.decisions = 0
        self.events_delivered = 0
        self.events_unencodable = 0  # matches the event schema refused (e.g. an over-long person id)
        self.events_dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.events_stale = 0  # sent after their expiry (the broker was away longer than events.ttl_s)
        self.tracks_active = 0
        self.dropped_frames = 0
        self.source_unreadable = 0  # images a folder source skipped (unreadable, a bomb), every time
        self.outbox_depth = 0
        self.bundle_version: str | None = None
        self.threshold: float | None = None  # the threshold in use (the gallery's or recognition.threshold)
        self.predicted_fpir: float | None = None  # what it predicts at the gallery's size (None: unknown)
        self.recognition = "off"
        self._stage: dict[str, deque] = {s: deque(maxlen=window) for s in STAGES}
        self._frame_times: deque = deque(maxlen=window)
        self.decision_latency: deque = deque(maxlen=1000)  # frame grabbed -> event in the outbox, ms
        self.publish_latency: deque = deque(maxlen=1000)  # frame grabbed -> broker acknowledged, ms
        self.frame_latency: deque = deque(maxlen=window)  # frame grabbed -> its processing done, ms
        self._lock = threading.Lock()

    def dropped(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.events_dropped[reason] = self.events_dropped.get(reason, 0) + count

    def stage(self, name: str, ms: float) -> None:
        self._stage[name].append(ms)

    def frame_done(self, latency_ms: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames += 1
            self._frame_times.append(now)
            self.frame_latency.append(latency_ms)

    def fps(self) -> float:
        with self._lock:
            times = list(self._frame_times)
        if len(times) < 2:
            return 0.0
        if time.monotonic() - times[-1] > 5:  # stalled
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    def stage_ms(self) -> dict[str, float]:
        return {s: round(float(np.mean(v)), 2) for s, v in self._stage.items() if v}

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def prometheus(self, device_id: str) -> str:
        lab = f'device="{device_id}"'
        lines = [
            "# HELP lookout_frames_total Frames processed.",
            "# TYPE lookout_frames_total counter",
            f"lookout_frames_total{{{lab}}} {self.frames}",
            "# TYPE lookout_frames_dropped_total counter",
            f"lookout_frames_dropped_total{{{lab}}} {self.dropped_frames}",
            "# HELP lookout_source_unreadable_total Images a folder source skipped (unreadable, too large).",
            "# TYPE lookout_source_unreadable_total counter",
            f"lookout_source_unreadable_total{{{lab}}} {self.source_unreadable}",
            "# TYPE lookout_faces_total counter",
            f"lookout_faces_total{{{lab}}} {self.faces}",
            "# TYPE lookout_faces_embedded_total counter",
            f"lookout_faces_embedded_total{{{lab}}} {self.embedded}",
            "# TYPE lookout_matches_total counter",
            f"lookout_matches_total{{{lab}}} {self.decisions}",
            "# TYPE lookout_events_delivered_total counter",
            f"lookout_events_delivered_total{{{lab}}} {self.events_delivered}",
            "# HELP lookout_events_unencodable_total Matches not sent: the event schema refused them (see the log).",
            "# TYPE lookout_events_unencodable_total counter",
            f"lookout_events_unencodable_total{{{lab}}} {self.events_unencodable}",
            "# HELP lookout_events_dropped_total Match events dropped unsent, by reason (see the log).",
            "# TYPE lookout_events_dropped_total counter",
            *(f'lookout_events_dropped_total{{{lab},reason="{r}"}} {n}' for r, n in self.events_dropped.items()),
            "# HELP lookout_events_stale_total Match events sent after their expiry (events.ttl_s).",
            "# TYPE lookout_events_stale_total counter",
            f"lookout_events_stale_total{{{lab}}} {self.events_stale}",
            "# TYPE lookout_fps gauge",
            f"lookout_fps{{{lab}}} {self.fps():.2f}",
            "# TYPE lookout_tracks_active gauge",
            f"lookout_tracks_active{{{lab}}} {self.tracks_active}",
            "# HELP lookout_outbox_depth Events waiting for the broker.",
            "# TYPE lookout_outbox_depth gauge",
            f"lookout_outbox_depth{{{lab}}} {self.outbox_depth}",
            "# TYPE lookout_stage_ms gauge",
        ]
        for stage, ms in self.stage_ms().items():
            lines.append(f'lookout_stage_ms{{{lab},stage="{stage}"}} {ms}')
        lines.append("# TYPE lookout_uptime_seconds gauge")
        lines.append(f"lookout_uptime_seconds{{{lab}}} {self.uptime_s():.1f}")
        if self.threshold is not None:
            lines += [
                "# HELP lookout_threshold The decision threshold in use (cosine).",
                "# TYPE lookout_threshold gauge",
            ]
            lines.append(f"lookout_threshold{{{lab}}} {self.threshold:g}")
        if self.predicted_fpir is not None:
            lines += [
                "# HELP lookout_predicted_fpir Share of strangers the threshold in use predicts to match someone, "
                "at the gallery's size.",
                "# TYPE lookout_predicted_fpir gauge",
                f"lookout_predicted_fpir{{{lab}}} {self.predicted_fpir:g}",
            ]
        lines.append("# TYPE lookout_bundle_info gauge")
        lines.append(
            f'lookout_bundle_info{{{lab},version="{self.bundle_version or ""}",recognition="{self.recognition}"}} 1'
        )
        return "\n".join(lines) + "\n"


def status_payload(device_id: str, state: Literal["online", "offline"], bundle_version: str | None) -> bytes:
    """The retained status message (``online`` or ``offline``)."""
    status = DeviceStatus(
        device_id=device_id, state=state, at=utc_now(), version=__version__, bundle_version=bundle_version
    )
    return status.model_dump_json(exclude_none=True).encode()


def last_will(device_id: str, status_topic: str, metrics: Metrics) -> tuple[str, bytes, int, bool]:
    """(topic, payload, qos, retain) the broker publishes for the device when its connection dies."""
    return status_topic, status_payload(device_id, "offline", metrics.bundle_version), 1, True


class StatusReporter:
    """Retained online/offline status and the periodic heartbeat."""

    def __init__(
        self,
        publisher: EventPublisher,
        metrics: Metrics,
        *,
        device_id: str,
        status_topic: str,
        heartbeat_topic: str,
        heartbeat_s: float,
    ) -> None:
        self.publisher = publisher
        self.metrics = metrics
        self.device_id = device_id
        self.status_topic = status_topic
        self.heartbeat_topic = heartbeat_topic
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def status_payload(self, state: Literal["online", "offline"]) -> bytes:
        return status_payload(self.device_id, state, self.metrics.bundle_version)

    def online(self) -> None:
        self.publisher.publish(self.status_topic, self.status_payload("online"), qos=1, retain=True)

    def offline(self, timeout: float = 2.0) -> bool:
        """Publish the retained offline status and wait (bounded) for the broker to take it."""
        done = threading.Event()
        if not self.publisher.publish(
            self.status_topic,
            self.status_payload("offline"),
            qos=1,
            retain=True,
            on_ack=lambda ok, reason="": done.set(),
        ):
            return False
        return done.wait(timeout)

    def heartbeat(self) -> Heartbeat:
        m = self.metrics
        return Heartbeat(
            device_id=self.device_id,
            at=utc_now(),
            fps=round(m.fps(), 2),
            stage_ms=m.stage_ms(),
            queue_depth=m.outbox_depth,
            bundle_version=m.bundle_version,
            uptime_s=round(m.uptime_s(), 1),
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            beat = self.heartbeat()
            if self.publisher.connected:
                self.publisher.publish(self.heartbeat_topic, beat.model_dump_json(exclude_none=True).encode(), qos=0)
            log.info(
                "heartbeat",
                fps=beat.fps,
                frames=self.metrics.frames,
                outbox=beat.queue_depth,
                tracks=self.metrics.tracks_active,
                **{f"{k}_ms": v for k, v in beat.stage_ms.items()},
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
