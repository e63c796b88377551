"""Where frames come from, and the grabber that keeps latency bounded.

Sources: a video file, a folder of images (a slow camera), a USB camera index, an
RTSP/HTTP stream (anything OpenCV's VideoCapture opens). Cameras and streams that
drop are reopened with exponential backoff while the device keeps running.

:class:`FrameGrabber` reads in its own thread into a one-frame slot. In live mode
(cameras, streams, and files/folders played in real time) a new frame replaces one
the pipeline has not taken yet: when processing falls behind, old frames are
dropped, never queued, so frame-to-decision delay stays bounded by about one frame
of processing. With ``realtime: false`` a file is read as fast as the pipeline takes
frames, none dropped (tests and benchmarks).
"""

from __future__ import annotations

import os
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lookout.errors import InputError
from lookout.face.image_io import MAX_PIXELS, read_image
from lookout.log import get_logger
from lookout.redact import redact_url

log = get_logger(__name__)

# Every image that cannot be read gets one structured line from us; OpenCV's own unstructured stderr warnings about
# the same file ("PNG input buffer is incomplete") would only add noise log shippers cannot parse.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
# Bad files remembered so that each is reported once (a rotating folder with unique names: forgotten past this).
MAX_REPORTED_BAD_FILES = 10_000

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceUnavailable(Exception):
    """The camera or stream cannot be read right now (may come back)."""


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8
    index: int  # frames read from the source so far (0-based), gaps mean drops
    captured: float  # time.monotonic() when grabbed
    pts: float  # seconds since the source started (video timestamps for files)


class FrameSource(ABC):
    live = False  # a camera/stream (reopen on failure) rather than a file/folder
    nominal_fps: float | None = None  # files and folders always set one

    @property
    def rate(self) -> float:
        """Frames per second that timestamps are counted in (a source without its own: 25)."""
        return self.nominal_fps or 25.0

    def __init__(self, name: str) -> None:
        self.name = name
        self.skipped = 0  # images that could not be used (folder sources), for lookout_source_unreadable_total

    @abstractmethod
    def open(self) -> None:
        """Raise InputError (files: permanent) or SourceUnavailable (cameras/streams: retry)."""

    @abstractmethod
    def read(self) -> tuple[np.ndarray, float] | None:
        """(image, pts seconds), or None at the end. Raises SourceUnavailable when a live source fails."""

    def close(self) -> None:  # noqa: B027 (optional hook: most sources hold nothing to release)
        """Release the camera or file; sources that hold nothing keep this no-op."""

    def frame_age_s(self, image: np.ndarray) -> float:
        """How long before it was read this image was captured, where the source can tell (a test
        camera stamping its frames); 0 otherwise. Frame latencies are counted from capture."""
        return 0.0


class VideoFileSource(FrameSource):
    def __init__(self, path: Path, fps: float | None = None, loop: bool = False) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.fps_override = fps
        self.loop = loop
        self._cap: cv2.VideoCapture | None = None
        self._offset = 0.0
        self._last_pts = 0.0
        self._count = 0

    def open(self) -> None:
        if not self.path.is_file():
            raise InputError(f"video file {self.path}", "does not exist")
        cap = cv2.VideoCapture(str(self.path))
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok or first is None:
            cap.release()
            raise InputError(f"video file {self.path}", "cannot be decoded (not a video, or corrupt)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps = self.fps_override or (fps if 0 < fps < 1000 else 25.0)
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._cap = cap
        self._count = 0

    def read(self) -> tuple[np.ndarray, float] | None:
        assert self._cap is not None
        ok, image = self._cap.read()
        if not ok:
            if self.loop and self._count > 0:
                self._offset = self._last_pts + 1.0 / self.rate
                self._cap.release()
                self.open()
                ok, image = self._cap.read()
            if not ok:
                return None
        if self.fps_override:
            pts = self._count / self.rate
        else:
            pts = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if pts <= 0 and self._count:
                pts = self._count / self.rate
        self._count += 1
        self._last_pts = self._offset + pts
        return image, self._last_pts

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource(FrameSource):
    """Images in a folder, in name order. An image that cannot be used (unreadable, or larger than
    ``max_pixels`` by its header: a decompression bomb) is skipped, with one log line naming it the first time
    (per path, size and modification time: a looping folder does not repeat it at every pass; counted in
    ``skipped`` every time).

    A folder that goes away while it is read (a removable disk, a network share of camera snapshots, a
    folder another program rotates), or that no longer holds a readable image, is a source that went
    away: ``read`` raises SourceUnavailable and the grabber backs off and reopens it as it does a camera
    (reopening raises SourceUnavailable too; only the first open refuses a missing folder for good).
    A looping folder is listed again at each pass, so images added or removed meanwhile are seen."""

    def __init__(self, path: Path, fps: float | None = None, loop: bool = False, max_pixels: int = MAX_PIXELS) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.max_pixels = max_pixels
        self.nominal_fps = fps or 2.0
        self.loop = loop
        self._files: list[Path] = []
        self._i = 0
        self._n = 0
        self.skipped = 0
        self._failed_in_a_row = 0
        self._opened = False
        self._reported: set[tuple[str, int, float]] = set()

    def open(self) -> None:
        try:
            self._files = self._list()
        except SourceUnavailable as err:
            if self._opened:  # it was there: it went away, and may come back
                raise
            raise InputError(f"image folder {self.path}", str(err)) from None
        self._opened = True
        self._i = 0
        self._failed_in_a_row = 0

    def _list(self) -> list[Path]:
        if not self.path.is_dir():
            raise SourceUnavailable("does not exist or is not a folder")
        try:
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        except OSError as err:
            raise SourceUnavailable(f"cannot be listed: {err.strerror or err}") from None
        if not files:
            raise SourceUnavailable(f"holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files

    def _report(self, path: Path, reason: str) -> None:
        """One line per bad file (path, size, mtime): a file replaced by a new one is reported again."""
        key = _file_key(path)
        if key in self._reported:
            return
        if len(self._reported) >= MAX_REPORTED_BAD_FILES:
            self._reported.clear()
        self._reported.add(key)
        log.warning("source.unreadable_image", path=str(path), reason=reason, hint="skipped (said once per file)")

    def read(self) -> tuple[np.ndarray, float] | None:
        while True:
            if self._i >= len(self._files):
                if not self.loop:
                    return None
                self._files, self._i = self._list(), 0  # each pass sees what the folder holds now
            path = self._files[self._i]
            self._i += 1
            try:
                image = read_image(path, self.max_pixels)
            except InputError as err:
                if not self.path.is_dir():
                    raise SourceUnavailable("the folder went away") from None
                self._report(path, err.reason)
                self.skipped += 1
                self._failed_in_a_row += 1
                if self.skipped >= len(self._files) and not self._n:
                    return None  # nothing in the folder can be read: end rather than spin
                if self._failed_in_a_row >= len(self._files):
                    raise SourceUnavailable("no image in it can be read any more") from None
                continue
            self._failed_in_a_row = 0
            pts = self._n / self.rate
            self._n += 1
            return image, pts


def _file_key(path: Path) -> tuple[str, int, float]:
    try:
        st = path.stat()
    except OSError:
        return str(path), -1, -1.0
    return str(path), st.st_size, st.st_mtime


# FFmpeg options for network streams (OpenCV reads them from this variable; an operator's own value wins):
# RTSP over TCP (no lost packets, no reordering buffer), no input buffering, low-delay decoding.
FFMPEG_STREAM_OPTIONS = "rtsp_transport;tcp|fflags;nobuffer|flags;low_delay"


class CaptureSource(FrameSource):
    """A USB camera (by index) or a network stream: live, reopened when it fails.

    Streams are opened with bounded waits (``timeout_s`` to connect and for each frame, so a
    camera that hangs is noticed and reopened rather than waited on for ever) and decoded in
    ``decode_threads`` threads: FFmpeg's frame threading holds back one frame per extra
    thread (measured: 40 ms at 25 fps for each), so one thread unless the stream is too
    big for one core."""

    live = True

    def __init__(
        self,
        target: int | str,
        width: int | None = None,
        height: int | None = None,
        *,
        timeout_s: float = 10.0,
        decode_threads: int = 1,
    ) -> None:
        super().__init__(f"camera {target}" if isinstance(target, int) else _redact(target))
        self.target = target
        self.width, self.height = width, height
        self.timeout_s = timeout_s
        self.decode_threads = decode_threads
        self._cap: cv2.VideoCapture | None = None
        self._t0 = 0.0

    def _capture(self) -> cv2.VideoCapture:
        if isinstance(self.target, int):
            return cv2.VideoCapture(self.target)
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_STREAM_OPTIONS)
        timeout_ms = int(self.timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        if self.decode_threads:
            params += [cv2.CAP_PROP_N_THREADS, self.decode_threads]
        return cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)

    def open(self) -> None:
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            what = (
                "no camera at that index (unplugged, or in use by another program?)"
                if isinstance(self.target, int)
                else "cannot be opened (unreachable, wrong URL or credentials?)"
            )
            raise SourceUnavailable(what)
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps = fps if 0 < fps < 1000 else None
        self._cap = cap
        self._t0 = time.monotonic()

    def read(self) -> tuple[np.ndarray, float] | None:
        assert self._cap is not None
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceUnavailable("stopped delivering frames")
        return image, time.monotonic() - self._t0

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _redact(url: str) -> str:
    """A URL without its password (and query values), for logs: the one rule in lookout.redact."""
    return redact_url(url)


def open_source(
    url: str,
    kind: str = "auto",
    *,
    fps: float | None = None,
    loop: bool = False,
    width: int | None = None,
    height: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> FrameSource:
    """The right FrameSource for a config's ``source.url`` / ``source.kind`` (not yet opened)."""
    if kind == "auto":
        if url.strip().isdigit():
            kind = "usb"
        elif url.lower().startswith(STREAM_SCHEMES):
            kind = "stream"
        elif Path(url).is_dir():
            kind = "folder"
        else:
            kind = "file"
    if kind == "usb":
        if not url.strip().isdigit():
            raise InputError(f"source {url!r}", "a USB camera is given by its index, such as 0")
        return CaptureSource(int(url), width, height)
    if kind == "stream":
        return CaptureSource(url, width, height)
    if kind == "folder":
        return FolderSource(Path(url), fps, loop, max_pixels)
    return VideoFileSource(Path(url), fps, loop)


@dataclass
class Backoff:
    """Delays between reconnection attempts: ``initial_s`` doubling up to ``max_s``, each shortened by a
    random share of up to ``jitter`` so that cameras that dropped together (a switch rebooting) do not
    all knock on the server at the same instant. ``reset()`` once the source delivers frames again."""

    initial_s: float = 1.0
    max_s: float = 30.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0  # delays handed out since the last reset

    def next_delay(self) -> float:
        nominal = min(self.initial_s * 2.0**self.attempt, self.max_s)
        self.attempt += 1
        return nominal * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempt = 0


class FrameGrabber:
    """Reads a source in a thread; the consumer always gets the newest frame (live) or every frame (not live).

    ``wait(seconds) -> stopped`` and ``clock()`` are the grabber's only notions of time between
    reconnection attempts; tests pass fakes. By default the wait is on a stop event of its own, so
    nothing but ``stop()`` cuts a backoff short (the frame slot's notifications used to, which
    retried an unreachable camera every 0.2 s)."""

    def __init__(
        self,
        source: FrameSource,
        *,
        realtime: bool = True,
        backoff: tuple[float, float] = (1.0, 30.0),
        give_up_after_s: float = 0.0,
        jitter: float = 0.2,
        wait: Callable[[float], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.drop_old = realtime or source.live
        self.pace = realtime and not source.live
        self.backoff = Backoff(backoff[0], backoff[1], jitter, rng or random.Random())
        self.give_up_after_s = give_up_after_s
        self._stopped = threading.Event()
        self._wait = wait or self._stopped.wait
        self._clock = clock
        self.attempts = 0  # failed opens of a live source, over the grabber's life
        self._slot: Frame | None = None
        self._cond = threading.Condition()
        self._stop = False
        self.finished = False  # the source ended (file) or gave up
        self.error: str | None = None
        self.frames = 0
        self.dropped = 0
        self.reopens = 0
        self.available = False  # frames are arriving (False before the first, and while the source is away)
        self._opened = False
        self._thread: threading.Thread | None = None

    def open(self) -> FrameGrabber:
        """Open a file/folder now, so that problems (InputError) show before anything else starts.
        Cameras and streams are opened by the reading thread, with retries."""
        if not self.source.live and not self._opened:
            self.source.open()
            self._opened = True
        return self

    def start(self) -> FrameGrabber:
        """Open (if not yet) and start reading."""
        self.open()
        self._thread = threading.Thread(target=self._run, name="frame-grabber", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.source.close()

    def get(self, timeout: float = 1.0) -> Frame | None:
        """The next frame, or None (nothing within ``timeout``, or finished: check ``finished``)."""
        with self._cond:
            if self._slot is None and not self.finished:
                self._cond.wait(timeout)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
            return frame

    def _put(self, frame: Frame) -> bool:
        with self._cond:
            if not self.drop_old:
                while self._slot is not None and not self._stop:
                    self._cond.wait(0.5)
            if self._stop:
                return False
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self._cond.notify_all()
            return True

    def _finish(self, error: str | None = None) -> None:
        with self._cond:
            self.finished = True
            self.error = error
            self._cond.notify_all()

    def _open_live(self, first_delay: float = 0.0) -> bool:
        """Open a camera/stream, retrying with backoff; False when stopped or given up.

        One log line per failed attempt, saying when the next one is. After a loss the first
        attempt waits one backoff step too (``first_delay``): a stream that opens and then fails
        at once would otherwise be reopened in a tight loop (only arriving frames reset the backoff)."""
        since = self._clock()
        delay = first_delay
        failures = 0
        while not self._stop:
            if delay and self._wait(delay):
                return False
            try:
                self.source.open()
            except SourceUnavailable as err:
                self.attempts += 1
                failures += 1
                waited = self._clock() - since
                if self.give_up_after_s and waited >= self.give_up_after_s:
                    msg = f"{self.source.name}: {err}; gave up after {waited:.0f} s"
                    log.error("source.gave_up", source=self.source.name, reason=str(err), after_s=round(waited))
                    self._finish(msg)
                    return False
                delay = self.backoff.next_delay()
                log.warning(
                    "source.unavailable",
                    source=self.source.name,
                    reason=str(err),
                    attempt=failures,
                    retry_in_s=round(delay, 2),
                )
                continue
            if self.reopens or self.attempts:
                log.info("source.opened", source=self.source.name, failed_attempts=failures)
            return True
        return False

    def _run(self) -> None:
        index = 0
        start = time.monotonic()
        last_pts = 0.0
        try:
            if self.source.live and not self._open_live():
                return
            while not self._stop:
                try:
                    got = self.source.read()
                except SourceUnavailable as err:
                    self.available = False
                    delay = self.backoff.next_delay()
                    log.warning("source.lost", source=self.source.name, reason=str(err), retry_in_s=round(delay, 2))
                    self.source.close()
                    self.reopens += 1
                    if not self._open_live(first_delay=delay):
                        return
                    start = time.monotonic() - last_pts  # a paced file or folder goes on at its pace, not in a rush
                    continue
                self.backoff.reset()
                if got is None:
                    log.info("source.ended", source=self.source.name, frames=index)
                    self._finish()
                    return
                image, pts = got
                last_pts = pts
                self.available = True
                if self.pace:
                    delay = start + pts - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                frame = Frame(image, index, time.monotonic() - self.source.frame_age_s(image), pts)
                index += 1
                self.frames = index
                if not self._put(frame):
                    return
        except Exception as err:  # a bug or an OpenCV failure: say so, end the stream
            log.error("source.failed", source=self.source.name, error=repr(err))
            self._finish(f"{self.source.name}: {err}")
        finally:
            if not self.finished:
                self._finish()
