"""A live H.264 RTSP camera on loopback, served by GStreamer's RTSP server: tests and benchmarks.

Run under a Python that has PyGObject and GStreamer's RTSP server bindings (Debian:
``python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,ugly}``), which
is the system Python, not the project's virtualenv: ``lookout.rtsp_server`` starts it as
a separate process. This module imports only the standard library at module level, so
the project can import the stamp layout from it.

Like a camera, it captures frames at a fixed rate whether or not anyone watches, and
encodes them live (x264, zero-latency tuning, one key frame a second). The frames come
from a file of raw I420 frames (``--frames``, each shown ``--hold`` ticks, looped) or are
a plain grey picture. Every frame carries a **stamp**: the wall-clock time at which it was
"captured", as 48 black or white 16x16 blocks along the top-left edge (40 bits of
milliseconds since the epoch and an 8-bit checksum), so that a receiver on the same
machine can tell how old a frame is when it decodes it: the camera-to-event latency.

    python3 rtsp_gst_server.py --port 0 --width 1280 --height 720 --fps 25 [--frames F.i420 --hold 5]

prints ``READY <port>`` once clients can connect, then serves ``rtsp://127.0.0.1:<port>/stream``
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

STAMP_BLOCK = 16  # pixels per bit, each side
STAMP_DATA_BITS = 40
STAMP_CHECK_BITS = 8
STAMP_BITS = STAMP_DATA_BITS + STAMP_CHECK_BITS
STAMP_WIDTH = STAMP_BITS * STAMP_BLOCK
BLACK, WHITE = 16, 235  # video-range luma
PATH = "/stream"


def stamp_checksum(ms: int) -> int:
    """Sum of the five bytes of a 40-bit value, modulo 256."""
    return sum((ms >> (8 * i)) & 0xFF for i in range(5)) & 0xFF


def stamp_bits(ms: int) -> list[int]:
    """The 48 bits of a stamp, most significant first: 40 bits of ``ms`` then the checksum."""
    ms &= (1 << STAMP_DATA_BITS) - 1
    value = (ms << STAMP_CHECK_BITS) | stamp_checksum(ms)
    return [(value >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)]


def stamp_luma_row(ms: int) -> bytes:
    """One row of the stamp strip in the Y plane."""
    return b"".join(bytes([WHITE if bit else BLACK]) * STAMP_BLOCK for bit in stamp_bits(ms))


def write_stamp(frame: bytearray, width: int, height: int, ms: int) -> None:
    """Stamp an I420 frame in place: the luma strip, and neutral chroma beneath it."""
    row = stamp_luma_row(ms)
    for y in range(STAMP_BLOCK):
        frame[y * width : y * width + STAMP_WIDTH] = row
    chroma_w, u_start = width // 2, width * height
    v_start = u_start + chroma_w * (height // 2)
    neutral = bytes([128]) * (STAMP_WIDTH // 2)
    for y in range(STAMP_BLOCK // 2):
        for start in (u_start, v_start):
            frame[start + y * chroma_w : start + y * chroma_w + STAMP_WIDTH // 2] = neutral


def grey_frame(width: int, height: int) -> bytes:
    """A plain picture (luma ramp, neutral chroma) when no frames file is given."""
    luma = b"".join(bytes([40 + (140 * y) // max(1, height - 1)]) * width for y in range(height))
    return luma + bytes([128]) * (width * height // 2)


class FrameFile:
    """Raw I420 frames read one at a time from disk (the page cache holds them, not this process)."""

    def __init__(self, path: str | None, width: int, height: int) -> None:
        self.size = width * height * 3 // 2
        self.handle = open(path, "rb") if path else None  # noqa: SIM115 (held open for the server's life)
        self.count = 1
        self._grey = b""
        if self.handle is not None:
            self.handle.seek(0, 2)
            self.count = max(1, self.handle.tell() // self.size)
        else:
            self._grey = grey_frame(width, height)

    def frame(self, index: int) -> bytearray:
        if self.handle is None:
            return bytearray(self._grey)
        self.handle.seek((index % self.count) * self.size)
        return bytearray(self.handle.read(self.size))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--frames", help="raw I420 frames of --width x --height, concatenated")
    parser.add_argument("--hold", type=int, default=1, help="ticks each frame of --frames is shown")
    parser.add_argument("--bitrate", type=int, default=4000, help="kbit/s")
    return parser.parse_args(argv)


def launch_line(args: argparse.Namespace) -> str:
    caps = f"video/x-raw,format=I420,width={args.width},height={args.height},framerate={round(args.fps)}/1"
    gop = max(1, round(args.fps))
    return (
        f"( appsrc name=camera is-live=true do-timestamp=true format=time max-buffers=2 leaky-type=downstream caps={caps} "
        f""
        f"! x264enc tune=zerolatency speed-preset=ultrafast sliced-threads=false threads=1 key-int-max={gop} bitrate={args.bitrate} "
        f"! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # PyGObject and GStreamer are system libraries, present only under the system Python.
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    frames = FrameFile(args.frames, args.width, args.height)
    sources: list = []  # appsrc elements of the media being served
    lock = threading.Lock()

    def on_configure(_factory, media) -> None:
        camera = media.get_element().get_child_by_name("camera")
        with lock:
            sources.append(camera)

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(True)
    factory.connect("media-configure", on_configure)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(PATH, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    stop = threading.Event()

    def capture() -> None:
        """The camera's shutter: one frame per tick, stamped, pushed to every viewer."""
        period, tick, start = 1.0 / args.fps, 0, time.monotonic()
        while not stop.wait(max(0.0, start + tick * period - time.monotonic())):
            with lock:
                viewers = list(sources)
            if viewers:
                frame = frames.frame(tick // max(1, args.hold))
                write_stamp(frame, args.width, args.height, int(time.time() * 1000))
                buffer = Gst.Buffer.new_wrapped(bytes(frame))
                for camera in viewers:
                    if camera.emit("push-buffer", buffer) != Gst.FlowReturn.OK:
                        with lock:
                            if camera in sources:
                                sources.remove(camera)
            tick += 1

    def quit_loop() -> bool:
        stop.set()
        loop.quit()
        return False

    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, quit_loop)
    thread = threading.Thread(target=capture, name="camera", daemon=True)
    thread.start()
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    thread.join(2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
