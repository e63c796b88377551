"""A real RTSP camera for tests: GStreamer's RTSP server on loopback (``lookout.rtsp_server``).

``rtsp_camera`` is a started 1280x720 25 fps H.264 camera of a plain grey picture;
``rtsp_camera_factory(frames=..., hold=...)`` makes cameras of other pictures. Tests that use
them skip, saying what to install, where no Python with GStreamer's RTSP server exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lookout.rtsp_server import RtspCamera, RtspUnavailable, gst_python

__all__ = ["RtspCamera", "require_gst_python", "rtsp_camera", "rtsp_camera_factory"]


def require_gst_python() -> str:
    """The Python that runs the server, or skip the calling test with what to install."""
    try:
        return gst_python()
    except RtspUnavailable as err:
        pytest.skip(f"RTSP tests need GStreamer's RTSP server: {err}")


@pytest.fixture
def rtsp_camera_factory() -> Iterator[Callable[..., RtspCamera]]:
    python = require_gst_python()
    cameras: list[RtspCamera] = []

    def make(**kwargs: object) -> RtspCamera:
        camera = RtspCamera(python=python, **kwargs)  # type: ignore[arg-type]
        cameras.append(camera)
        return camera.start()

    yield make
    for camera in cameras:
        camera.stop()


@pytest.fixture
def rtsp_camera(rtsp_camera_factory) -> RtspCamera:
    return rtsp_camera_factory()
