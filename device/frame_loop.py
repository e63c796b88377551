"""The per-frame work: frames -> detection -> tracking -> quality -> embedding -> search -> decision.

One thread runs it. Per frame::

    submit detection of frame t+1
    finish frame t: collect its embeddings, search, decide (decisions go to ``on_decision``)
    collect detection of t+1, track, gate quality, submit embedding of the faces that need it

so the embedding of one frame overlaps the detection of the next (the two stages have
their own inference queues: lookout.face.stage). When no frame is waiting, the previous
frame is finished at once rather than after the next one arrives.

Privacy: faces that do not match leave nothing: their embeddings, scores and crops live
in memory with their track and are dropped with it; no frame is written to disk unless
``debug.save_frames_dir`` is set (announced at start-up by the runtime).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from lookout.device.config import DeviceConfig
from lookout.device.decision import Decider, Decision, Observation
from lookout.device.emitter import face_crop
from lookout.device.gallery_swap import GallerySwap
from lookout.device.sources import Frame, FrameGrabber
from lookout.device.status import Metrics
from lookout.device.tracker import IouTracker, Track
from lookout.device.tuning import Tuning
from lookout.face.pipeline import FacePipeline
from lookout.face.stage import Pending
from lookout.face.types import Face
from lookout.gallery.reader import GalleryReader


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


@dataclass
class FrameWork:
    """One frame between 'embedding submitted' and 'decided'."""

    frame: Frame
    now: float  # the frame's time, epoch seconds
    gallery: GalleryReader | None  # searched from start to end of this frame, even if a new one arrives
    tracks: list[Track] = field(default_factory=list)
    pending: Pending | None = None


# What a decision is handed to: (decision, gallery, frame time in epoch seconds, grab time monotonic).
DecisionSink = Callable[[Decision, GalleryReader, float, float], None]


class FrameLoop:
    def __init__(
        self,
        cfg: DeviceConfig,
        pipeline: FacePipeline,
        galleries: GallerySwap,
        decider: Decider,
        tuning: Tuning,
        metrics: Metrics,
        clock: Clock,
        *,
        recognition: bool,
        on_decision: DecisionSink,
        on_ready: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        """``on_ready`` is called at every frame processed with a gallery in use (or recognition off)."""
        self.cfg = cfg
        self.pipeline = pipeline
        self.galleries = galleries
        self.decider = decider
        self.tuning = tuning
        self.metrics = metrics
        self.clock = clock
        self.recognition = recognition
        self.on_decision = on_decision
        self.on_ready = on_ready
        self._stop = stop
        t = cfg.tracking
        self.tracker = IouTracker(t.iou_threshold, t.max_distance, t.max_missed)
        self.save_dir = cfg.debug.save_frames_dir

    def run(self, grabber: FrameGrabber) -> None:
        if self.save_dir:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        prev: FrameWork | None = None
        self._take_gallery()  # models loaded, publisher started: ready now if a gallery is in use
        while not self._stop.is_set():
            t0 = time.perf_counter()
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
            self.metrics.source_unreadable = grabber.source.skipped
            gallery = self._take_gallery()
            t1 = time.perf_counter()
            detection = self.pipeline.submit_detection(frame.image)
            if prev is not None:
                self._finish(prev)  # overlaps the detection just submitted
            faces = self.pipeline.collect_detection(detection)
            self.metrics.stage("detect", (time.perf_counter() - t1) * 1000)
            if self.save_dir:
                cv2.imwrite(str(self.save_dir / f"frame-{frame.index:08d}.jpg"), frame.image)
            prev = self._start(frame, faces, gallery)
        if prev is not None:
            self._finish(prev)
        self.tracker.end_all()  # tracks (and whatever they held in memory) are dropped here

    def _take_gallery(self) -> GalleryReader | None:
        gallery = self.galleries.take() if self.recognition else None
        if gallery is not None or not self.recognition:
            self.on_ready()
        return gallery

    def _start(self, frame: Frame, faces: list[Face], gallery: GalleryReader | None) -> FrameWork:
        now = self.clock.at(frame.pts)
        t0 = time.perf_counter()
        tracks, _ended = self.tracker.update([f.box for f in faces], frame.index)
        self.metrics.tracks_active = len(self.tracker.tracks)
        self.metrics.faces += len(faces)
        work = FrameWork(frame, now, gallery)
        self.metrics.stage("track", (time.perf_counter() - t0) * 1000)
        if not self.recognition or gallery is None or not faces:
            self._frame_done(work)
            return work
        t1 = time.perf_counter()
        chosen, chips = self._faces_to_embed(frame, faces, tracks, now)
        self.metrics.stage("align", (time.perf_counter() - t1) * 1000)
        if chosen:
            work.tracks = chosen
            work.pending = self.pipeline.submit_embedding(np.stack(chips))
        else:
            self._frame_done(work)
        return work

    def _faces_to_embed(
        self, frame: Frame, faces: list[Face], tracks: list[Track | None], now: float
    ) -> tuple[list[Track], list[np.ndarray]]:
        """The tracks that want an embedding this frame (closest faces first), with their aligned chips."""
        rec = self.cfg.recognition
        order = sorted(range(len(faces)), key=lambda i: -faces[i].width)
        # wants_embedding also re-arms decided tracks whose cooldown is over, so ask it in both modes.
        wanted = [
            i
            for i in order
            if (track := tracks[i]) is not None
            and (self.decider.wants_embedding(track, frame.index, now) or rec.embed == "all")
        ][: rec.max_faces]
        chosen: list[Track] = []
        chips_out: list[np.ndarray] = []
        if not wanted:
            return chosen, chips_out
        chips = self.pipeline.align(frame.image, [faces[i] for i in wanted])
        for i, chip in zip(wanted, chips):
            track = tracks[i]
            quality = self.pipeline.assess(faces[i], chip)
            if track is None or not quality.ok:  # (every detection has a track: None only to the type checker)
                continue
            self.decider.offer_crop(track, quality, lambda f=faces[i]: face_crop(frame.image, f))
            chosen.append(track)
            chips_out.append(chip)
        return chosen, chips_out

    def _finish(self, work: FrameWork) -> None:
        if work.pending is None or work.gallery is None:
            return
        t0 = time.perf_counter()
        vectors = self.pipeline.collect_embedding(work.pending)
        t1 = time.perf_counter()
        self.metrics.stage("embed", (t1 - t0) * 1000)
        self.metrics.embedded += len(vectors)
        results = work.gallery.search(vectors, k=2)
        t2 = time.perf_counter()
        self.metrics.stage("search", (t2 - t1) * 1000)
        threshold = self.tuning.threshold
        if threshold is None:
            threshold = float(work.gallery.threshold)
        for track, candidates in zip(work.tracks, results):
            track.embeds += 1
            track.last_embed_frame = work.frame.index
            if candidates:
                top = candidates[0]
                second = candidates[1].score if len(candidates) > 1 else -1.0
                obs = Observation(
                    work.frame.index, top.person_id, float(top.score), float(second), top.name, top.photo_id
                )
            else:
                obs = Observation(work.frame.index, None, -1.0, -1.0)
            decision = self.decider.observe(track, obs, threshold, work.now)
            if decision is not None:
                self.on_decision(decision, work.gallery, work.now, work.frame.captured)
        self.metrics.stage("decide", (time.perf_counter() - t2) * 1000)
        work.pending = None
        self._frame_done(work)

    def _frame_done(self, work: FrameWork) -> None:
        self.metrics.frame_done((time.monotonic() - work.frame.captured) * 1000)
