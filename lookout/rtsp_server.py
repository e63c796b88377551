"""A real RTSP camera on loopback for tests, benchmarks and demos: GStreamer's RTSP server in its own process.

The server (``lookout/rtsp_gst_server.py``) needs PyGObject and GStreamer's RTSP server
bindings, which Debian ships for the system Python only (``python3-gi``,
``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-{base,good,ugly}``; ``./run``
installs them). So :class:`RtspCamera` runs it as a child process of that Python
(``LOOKOUT_GST_PYTHON`` overrides which), waits for it to listen, and stops it by its
process id. It can be stopped and started again on the same port: a camera rebooting.

Each frame carries the wall-clock time at which the server "captured" it (see the server
module); :func:`read_stamp` reads it back from a decoded frame, so the age of a frame when
it reaches the device, and the camera-to-event latency, can be measured on one machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from lookout.log import get_logger
from lookout.rtsp_gst_server import (
    PATH,
    STAMP_BITS,
    STAMP_BLOCK,
    STAMP_CHECK_BITS,
    STAMP_DATA_BITS,
    stamp_checksum,
)

log = get_logger(__name__)

GST_PYTHON_ENV = "LOOKOUT_GST_PYTHON"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_gst_server.py")
DEBIAN_PACKAGES = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-ugly",
)
_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
    "missing = [e for e in ('appsrc', 'x264enc', 'rtph264pay', 'queue') if Gst.ElementFactory.find(e) is None]; "
    "print('missing GStreamer elements: ' + ', '.join(missing) if missing else 'ok')"
)


class RtspUnavailable(RuntimeError):
    """No Python with GStreamer's RTSP server here (the message says what to install)."""


def gst_python() -> str:
    """The Python that can run the server, or RtspUnavailable saying what is missing."""
    candidates = [os.environ.get(GST_PYTHON_ENV) or "", "/usr/bin/python3", sys.executable]
    reasons = []
    for python in dict.fromkeys(c for c in candidates if c):
        if not Path(python).is_file():
            continue
        try:
            probe = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as err:
            reasons.append(f"{python}: {err}")
            continue
        lines = probe.stdout.strip().splitlines() or probe.stderr.strip().splitlines()[-1:] or ["no output"]
        answer = lines[-1]
        if probe.returncode == 0 and answer == "ok":
            return python
        reasons.append(f"{python}: {answer}")
    raise RtspUnavailable(
        "no Python with GStreamer's RTSP server ("
        + "; ".join(reasons or ["no python3 found"])
        + f"); install the Debian packages {' '.join(DEBIAN_PACKAGES)} or set {GST_PYTHON_ENV}"
    )


class RtspCamera:
    """An H.264 RTSP camera at ``rtsp://127.0.0.1:<port>/stream``; ``start()``, ``stop()``, ``start()`` again."""

    def __init__(
        self,
        *,
        width: int = 1280,
        height: int = 720,
        fps: float = 25.0,
        frames: Path | None = None,
        hold: int = 1,
        port: int = 0,
        python: str | None = None,
        ready_timeout_s: float = 20.0,
    ) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.frames, self.hold = frames, hold
        self.port = port
        self.python = python or gst_python()
        self.ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{PATH}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RtspCamera:
        """Start serving (on the same port as before after a ``stop()``); return once clients can connect."""
        if self.running:
            return self
        command = [self.python, str(SERVER_SCRIPT), "--port", str(self.port), "--width", str(self.width)]
        command += ["--height", str(self.height), "--fps", str(self.fps), "--hold", str(self.hold)]
        if self.frames is not None:
            command += ["--frames", str(self.frames)]
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            ready = _wait_ready(process, self.ready_timeout_s)
            if ready is not None:
                break
            error = _stop_process(process)
            # Restarting on the port just released can race the kernel for a moment: retry briefly.
            if self.port == 0 or time.monotonic() > deadline:
                raise RtspUnavailable(f"the RTSP server did not start: {error or 'no READY line'}")
            time.sleep(0.2)
        self._process = process
        self.port = ready
        self.starts += 1
        log.info("rtsp_camera.started", url=self.url, pid=process.pid, frames=str(self.frames or "grey"))
        return self

    def stop(self) -> None:
        """Stop the server process (SIGTERM, then SIGKILL after 5 s): the camera goes away."""
        if self._process is not None:
            _stop_process(self._process)
            log.info("rtsp_camera.stopped", url=self.url)
            self._process = None

    def __enter__(self) -> RtspCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_ready(process: subprocess.Popen[str], timeout: float) -> int | None:
    """The port from the server's ``READY <port>`` line, or None if it exited or stayed silent."""
    found: list[int] = []

    def read() -> None:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.startswith("READY "):
            found.append(int(line.split()[1]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return found[0] if found else None


def _stop_process(process: subprocess.Popen[str]) -> str:
    """Stop it and return what it wrote on stderr (last line)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    _out, err = process.communicate()
    return (err or "").strip().splitlines()[-1] if (err or "").strip() else ""


def read_stamp(image: np.ndarray) -> float | None:
    """The server's capture time (seconds since the epoch) stamped in a decoded BGR frame, or None."""
    need = STAMP_BITS * STAMP_BLOCK
    if image.ndim != 3 or image.shape[0] < STAMP_BLOCK or image.shape[1] < need:
        return None
    quarter = STAMP_BLOCK // 4
    strip = image[quarter : STAMP_BLOCK - quarter, :need, 1].astype(np.float32)  # green ~ luma
    blocks = strip.reshape(strip.shape[0], STAMP_BITS, STAMP_BLOCK)[:, :, quarter : STAMP_BLOCK - quarter]
    bits = blocks.mean(axis=(0, 2)) > 128
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    ms, check = value >> STAMP_CHECK_BITS, value & ((1 << STAMP_CHECK_BITS) - 1)
    if check != stamp_checksum(ms) or ms == 0:
        return None
    now_ms = int(time.time() * 1000)
    full = (now_ms >> STAMP_DATA_BITS << STAMP_DATA_BITS) | ms  # the 40 bits wrap every ~35 years
    return full / 1000.0


def write_i420_frames(frames: Iterable[np.ndarray], out: Path) -> int:
    """Write BGR frames as raw I420 (what the server reads); returns how many."""
    count = 0
    with open(out, "wb") as handle:
        for frame in frames:
            handle.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
            count += 1
    return count


def video_frames(path: Path, every: int = 1) -> Iterable[np.ndarray]:
    """Every ``every``-th frame of a video file, BGR."""
    capture = cv2.VideoCapture(str(path))
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if index % every == 0:
                yield frame
            index += 1
    finally:
        capture.release()
