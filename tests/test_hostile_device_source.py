"""A folder source whose folder goes away (attack finding A18): it backs off like a camera.

Before: `rm -rf` of a looping folder source logged `source.unreadable_image` ~36,000 times a second and
/readyz still said processing. Now: one `source.lost`, then one `source.unavailable` per attempt on the
camera schedule (1 s doubling to 30 s), `give_up_after_s` respected, frames again when the folder is back,
and the runtime's readiness says not processing while it is away. Real images and the real grabber (its
waits and clock injected where the schedule is checked), real models for the runtime.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from lookout.device.config import DeviceConfig
from lookout.device.publisher import MemoryPublisher
from lookout.device.runtime import Runtime, SourceFailed
from lookout.device.sources import FolderSource, FrameGrabber
from tests.helpers import wait_for


def _folder(path: Path, images: int = 2) -> Path:
    path.mkdir()
    for i in range(images):
        cv2.imwrite(str(path / f"frame-{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    return path


class GoneAfterFirstWait:
    """Fake time for the grabber: the folder is removed before the grabber's first wait; the clock moves
    only when it waits; the grabber is stopped after ``limit`` waits."""

    def __init__(self, limit: int) -> None:
        self.now, self.waits, self.limit = 0.0, [], limit

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return len(self.waits) >= self.limit


def test_a_vanished_folder_backs_off_on_the_camera_schedule_one_line_per_attempt(tmp_path, caplog):
    folder = _folder(tmp_path / "frames")
    fake = GoneAfterFirstWait(limit=7)
    grabber = FrameGrabber(
        FolderSource(folder, fps=1000, loop=True), realtime=False, wait=fake.wait, clock=fake.clock,
        rng=random.Random(3),
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="lookout.device.sources"):
        grabber.start()
        assert grabber.get(timeout=5) is not None
        shutil.rmtree(folder)
        while grabber.get(timeout=0.2) is not None:  # frames read before it went
            pass
        assert grabber._thread is not None
        grabber._thread.join(10)
    assert not grabber._thread.is_alive()
    names = [r.getMessage() for r in caplog.records]
    assert names.count("source.lost") == 1 and names.count("source.unreadable_image") <= 2, names
    attempts = [r.lookout_fields for r in caplog.records if r.getMessage() == "source.unavailable"]
    assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1)) and len(attempts) >= 5
    nominal = [1, 2, 4, 8, 16, 30, 30]
    for waited, want in zip(fake.waits, nominal):
        assert want * 0.8 <= waited <= want, fake.waits
    assert not grabber.available


def test_give_up_after_s_ends_a_folder_that_stays_away(tmp_path):
    folder = _folder(tmp_path / "frames")
    fake = GoneAfterFirstWait(limit=100)
    grabber = FrameGrabber(
        FolderSource(folder, fps=1000, loop=True), realtime=False, wait=fake.wait, clock=fake.clock,
        give_up_after_s=20,
    )  # fmt: skip
    grabber.start()
    assert grabber.get(timeout=5) is not None
    shutil.rmtree(folder)
    wait_for(lambda: grabber.get(timeout=0.05) is None and grabber.finished, 10, "the grabber to give up")
    grabber.stop()
    assert grabber.error is not None and "gave up" in grabber.error and 20 <= fake.now <= 40


def test_a_folder_that_comes_back_is_read_again(tmp_path):
    folder = _folder(tmp_path / "frames")
    grabber = FrameGrabber(FolderSource(folder, fps=50, loop=True), backoff=(0.05, 0.1)).start()
    try:
        wait_for(lambda: grabber.get(timeout=0.1) is not None, 5, "a first frame")
        shutil.rmtree(folder)
        wait_for(lambda: not grabber.available, 5, "the grabber to notice the folder went away")
        _folder(folder, images=1)
        wait_for(lambda: grabber.available and grabber.get(timeout=0.1) is not None, 10, "frames again")
        assert not grabber.finished and grabber.reopens == 1
    finally:
        grabber.stop()


def test_a_folder_that_is_missing_at_start_is_still_refused_at_once(tmp_path):
    with pytest.raises(Exception, match="does not exist or is not a folder"):
        FrameGrabber(FolderSource(tmp_path / "nothing")).open()


@pytest.mark.slow
def test_the_device_is_not_ready_while_its_folder_is_away_and_gives_up_as_configured(tmp_path, pipeline):
    folder = _folder(tmp_path / "frames")
    doc = {
        "device_id": "cam-folder",
        "source": {"url": str(folder), "loop": True, "fps": 10, "give_up_after_s": 3,
                   "reopen": {"initial_s": 0.2, "max_s": 0.5}},
        "recognition": {"enabled": False},
        "models": {"device": "CPU"},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
    }  # fmt: skip
    runtime = Runtime(DeviceConfig.model_validate(doc), pipeline=pipeline, publisher=MemoryPublisher())
    result: dict = {}

    def run() -> None:
        try:
            result["rc"] = runtime.run()
        except SourceFailed as err:
            result["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: runtime.readiness()[1]["processing"], 60, "the device to process frames")
        shutil.rmtree(folder)
        wait_for(lambda: not runtime.readiness()[1]["processing"], 10, "readiness to say not processing")
        t0 = time.monotonic()
        thread.join(30)
    finally:
        runtime.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    assert "gave up" in str(result.get("error")), result
    assert time.monotonic() - t0 < 15


def test_a_looping_folder_reports_each_bad_file_once_and_counts_every_skip(tmp_path, caplog):
    """A32: a truncated PNG and an empty file in a looping folder: one line each, not one per pass; counted;
    a bad file replaced by another bad one is reported again; OpenCV's own stderr warnings are off."""
    folder = _folder(tmp_path / "frames", images=1)
    good = (folder / "frame-0.png").read_bytes()
    (folder / "trunc.png").write_bytes(good[: len(good) // 3])
    (folder / "empty.png").write_bytes(b"")
    source = FolderSource(folder, fps=1000, loop=True)
    source.open()
    with caplog.at_level(logging.WARNING, logger="lookout.device.sources"):
        frames = [source.read() for _ in range(10)]
        (folder / "trunc.png").write_bytes(good[: len(good) // 2])  # another bad file under the same name
        frames += [source.read() for _ in range(3)]
    assert all(f is not None for f in frames)
    reported = [r.lookout_fields["path"] for r in caplog.records if r.getMessage() == "source.unreadable_image"]
    assert sorted(Path(p).name for p in reported) == ["empty.png", "trunc.png", "trunc.png"], reported
    assert source.skipped >= 2 * 12
    assert cv2.utils.logging.getLogLevel() <= cv2.utils.logging.LOG_LEVEL_ERROR
