"""A small IoU tracker: links each frame's faces to the faces of the frames before.

Greedy matching, best overlap first; a detection that overlaps no track enough may
still continue the nearest one when its centre is within ``max_distance`` face
widths (fast movement at low frame rates). A track survives ``max_missed`` frames
without a detection (a blink of the detector, a passer-by in front), then ends.
Tracks hold no image data, only boxes and counters.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from lookout.face.detector import iou


@dataclass
class Track:
    id: int
    box: np.ndarray  # float32 [x1, y1, x2, y2], the latest detection
    first_frame: int
    last_frame: int
    hits: int = 1
    missed: int = 0
    embeds: int = 0  # how many times the track's face was embedded
    last_embed_frame: int = -1_000_000
    meta: dict = field(default_factory=dict)  # per-track state of other stages

    @property
    def length(self) -> int:
        """Frames from the first detection to the latest (what events report as track_length)."""
        return self.last_frame - self.first_frame + 1

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


class IouTracker:
    def __init__(self, iou_threshold: float = 0.3, max_distance: float = 0.6, max_missed: int = 8) -> None:
        self.iou_threshold = iou_threshold
        self.max_distance = max_distance
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def update(self, boxes: list[np.ndarray], frame_index: int) -> tuple[list[Track | None], list[Track]]:
        """Assign this frame's boxes to tracks.

        Returns (the track of each box, in box order; the tracks that ended this frame).
        """
        assigned: list[Track | None] = [None] * len(boxes)
        free_tracks = set(range(len(self.tracks)))
        free_boxes = set(range(len(boxes)))
        if self.tracks and boxes:
            det = np.stack([np.asarray(b, np.float32) for b in boxes])
            trk = np.stack([t.box for t in self.tracks])
            overlap = np.stack([iou(t, det) for t in trk])  # (T, D)
            for ti, di in zip(*np.unravel_index(np.argsort(-overlap, axis=None), overlap.shape)):
                if overlap[ti, di] < self.iou_threshold:
                    break
                if ti in free_tracks and di in free_boxes:
                    self._continue(self.tracks[ti], det[di], frame_index)
                    assigned[di] = self.tracks[ti]
                    free_tracks.discard(ti)
                    free_boxes.discard(di)
            if free_tracks and free_boxes and self.max_distance > 0:
                centre = lambda b: (b[..., 0:2] + b[..., 2:4]) / 2  # noqa: E731
                pairs = []
                for ti in free_tracks:
                    t = self.tracks[ti]
                    width = max(t.width, 1.0)
                    for di in free_boxes:
                        dist = float(np.linalg.norm(centre(trk[ti]) - centre(det[di]))) / width
                        size_ratio = (det[di][2] - det[di][0]) / width
                        if dist <= self.max_distance and 0.5 <= size_ratio <= 2.0:
                            pairs.append((dist, ti, di))
                for _, ti, di in sorted(pairs):
                    if ti in free_tracks and di in free_boxes:
                        self._continue(self.tracks[ti], det[di], frame_index)
                        assigned[di] = self.tracks[ti]
                        free_tracks.discard(ti)
                        free_boxes.discard(di)
        ended: list[Track] = []
        for ti in sorted(free_tracks):
            self.tracks[ti].missed += 1
        survivors: list[Track] = []
        for t in self.tracks:
            (ended if t.missed > self.max_missed else survivors).append(t)
        self.tracks = survivors
        for di in sorted(free_boxes):
            track = Track(next(self._ids), np.asarray(boxes[di], np.float32).copy(), frame_index, frame_index)
            self.tracks.append(track)
            assigned[di] = track
        return assigned, ended

    def end_all(self) -> list[Track]:
        ended, self.tracks = self.tracks, []
        return ended

    @staticmethod
    def _continue(track: Track, box: np.ndarray, frame_index: int) -> None:
        track.box = np.asarray(box, np.float32).copy()
        track.last_frame = frame_index
        track.hits += 1
        track.missed = 0
