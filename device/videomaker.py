"""Test videos from still photos: 1280x720, panning and zooming across faces-dev.

``make_scene_video`` strings segments together: each group photo of faces-dev
(``bbt*.jpg``) fitted to the frame with a slow zoom and pan, frames with no face,
and the seven strangers' expression photos (people in no identity folder). It
returns what is where (segments with their time ranges and the identities
``groups.csv`` lists), so a test knows which people should be matched and when.

``make_hold_video`` keeps one person in view (a crop of a group photo around
their face, with a little drift) for as long as asked: the cooldown test.

Used by the tests, ``lookout bench device`` and the demo; ``lookout video make``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lookout.errors import InputError

SIZE = (1280, 720)
GROUP_PHOTOS = ("bbt1", "bbt2", "bbt3", "bbt4", "bbt5")
STRANGERS = ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")


@dataclass
class Segment:
    kind: str  # "group", "blank", "stranger", "hold"
    source: str  # photo name, or "" for blank
    start_s: float
    end_s: float
    identities: list[str] = field(default_factory=list)  # people listed in groups.csv for this photo


@dataclass
class VideoInfo:
    path: Path
    fps: float
    frames: int
    size: tuple[int, int]
    segments: list[Segment]

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def identities(self) -> set[str]:
        return {i for s in self.segments for i in s.identities}


def read_groups(faces_dev: Path) -> dict[str, list[tuple[str, tuple[int, int, int, int]]]]:
    """groups.csv as {photo stem: [(identity, box), ...]}."""
    out: dict[str, list] = {}
    with open(Path(faces_dev) / "groups.csv", newline="") as f:
        for row in csv.DictReader(f):
            box = tuple(int(row[k]) for k in ("x1", "y1", "x2", "y2"))
            out.setdefault(Path(row["image"]).stem, []).append((row["identity"], box))
    return out


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(str(path), "cannot read the image")
    return image


def _render(photo: np.ndarray, centre: tuple[float, float], scale: float, size=SIZE) -> np.ndarray:
    """The frame showing ``photo`` scaled by ``scale`` with photo point ``centre`` (pixels) at the frame centre."""
    w, h = size
    m = np.array([[scale, 0, w / 2 - scale * centre[0]], [0, scale, h / 2 - scale * centre[1]]], np.float32)
    return cv2.warpAffine(
        photo, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(40, 40, 40)
    )


def _blank(i: int, size=SIZE) -> np.ndarray:
    """A frame with no face: a moving gradient with a few shapes (a wall, a door)."""
    w, h = size
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    base = (0.5 + 0.5 * np.sin(6 * x + 3 * y + 0.1 * i)) * 120 + 60
    frame = np.dstack([base, base * 0.9, base * 0.8]).astype(np.uint8)
    cv2.rectangle(frame, (900, 150), (1100, 700), (60, 90, 120), -1)
    cv2.circle(frame, (300 + 3 * i % 200, 300), 60, (200, 200, 210), -1)
    return frame


class _Writer:
    def __init__(self, path: Path, fps: float, size=SIZE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter.fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
        self.writer = cv2.VideoWriter(str(path), fourcc, fps, size)
        if not self.writer.isOpened():
            raise InputError(str(path), "cannot write a video there (use .mp4 or .avi)")
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


def make_scene_video(
    out: Path,
    faces_dev: Path,
    *,
    fps: float = 10.0,
    photo_s: float = 3.0,
    photos: tuple[str, ...] = GROUP_PHOTOS,
    blank_s: float = 1.0,
    strangers: bool = True,
    stranger_s: float = 1.5,
    zoom: tuple[float, float] = (1.0, 1.15),
    repeat: int = 1,
) -> VideoInfo:
    """Group photos (zoom and pan), blank frames between, then the strangers."""
    faces_dev = Path(faces_dev)
    groups = read_groups(faces_dev)
    out = Path(out)
    writer = _Writer(out, fps)
    segments: list[Segment] = []
    t = lambda: writer.frames / fps  # noqa: E731

    def blank() -> None:
        start = t()
        for i in range(round(blank_s * fps)):
            writer.write(_blank(writer.frames + i))
        if blank_s > 0:
            segments.append(Segment("blank", "", start, t()))

    try:
        for _ in range(repeat):
            for n, name in enumerate(photos):
                photo = _read(faces_dev / f"{name}.jpg")
                ph, pw = photo.shape[:2]
                fit = min(SIZE[0] / pw, SIZE[1] / ph)
                frames = max(1, round(photo_s * fps))
                start = t()
                direction = 1 if n % 2 == 0 else -1
                for i in range(frames):
                    a = i / max(1, frames - 1)
                    z = zoom[0] + (zoom[1] - zoom[0]) * a
                    pan = 0.04 * pw * direction * (a - 0.5)
                    writer.write(_render(photo, (pw / 2 + pan, ph / 2), fit * z))
                segments.append(Segment("group", name, start, t(), [i for i, _ in groups.get(name, [])]))
                blank()
            if strangers:
                for name in STRANGERS:
                    photo = _read(faces_dev / f"{name}.jpg")
                    ph, pw = photo.shape[:2]
                    scale = 420 / ph
                    frames = max(1, round(stranger_s * fps))
                    start = t()
                    for i in range(frames):
                        a = i / max(1, frames - 1)
                        writer.write(_render(photo, (pw / 2 + 0.05 * pw * (a - 0.5), ph / 2), scale * (1 + 0.05 * a)))
                    segments.append(Segment("stranger", name, start, t()))
                blank()
        if writer.frames == 0:  # nothing asked for but faceless frames
            blank()
    finally:
        writer.close()
    return VideoInfo(out, fps, writer.frames, SIZE, segments)


def make_hold_video(
    out: Path,
    faces_dev: Path,
    *,
    identity: str = "sheldon",
    photo: str = "bbt1",
    seconds: float = 180.0,
    fps: float = 2.0,
) -> VideoInfo:
    """One person in view for ``seconds``: a crop of ``photo`` around ``identity``'s face, drifting slightly."""
    faces_dev = Path(faces_dev)
    entries = dict((i, b) for i, b in read_groups(faces_dev).get(photo, []))
    if identity not in entries:
        raise InputError(f"{photo}.jpg", f"groups.csv lists no {identity!r} in it")
    x1, y1, x2, y2 = entries[identity]
    image = _read(faces_dev / f"{photo}.jpg")
    # Keep only the person: black out everything beyond 1.4 face sizes around their face.
    fw = x2 - x1
    mask = np.zeros(image.shape[:2], np.uint8)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    cv2.rectangle(mask, (int(cx - 1.4 * fw), int(cy - 1.4 * fw)), (int(cx + 1.4 * fw), int(cy + 2.5 * fw)), 255, -1)
    person = cv2.bitwise_and(image, image, mask=mask)
    scale = 200 / fw  # a face about 200 px wide
    writer = _Writer(Path(out), fps)
    try:
        for i in range(round(seconds * fps)):
            dx = 0.05 * fw * math.sin(i / 7.0)
            writer.write(_render(person, (cx + dx, cy + 0.5 * fw), scale))
    finally:
        writer.close()
    return VideoInfo(
        Path(out), fps, writer.frames, SIZE, [Segment("hold", photo, 0.0, writer.frames / fps, [identity])]
    )


def corrupt_video(out: Path, size: int = 200_000) -> Path:
    """A file that looks like a video by name and is not one (bad-input tests)."""
    rng = np.random.default_rng(0)
    Path(out).write_bytes(b"\x00\x00\x00\x18ftypmp42" + rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return Path(out)
