"""Camera reconnection backoff (issue 12 item 3): 1 s doubling to 30 s with jitter, one log line per attempt.

The grabber's waits and clock are injected, so the schedule is checked exactly without
sleeping; one test runs on real time over a bounded window with a consumer polling the
frame slot, which is what used to cut every backoff wait short.
"""

from __future__ import annotations

import logging
import random
import threading
import time

import numpy as np
import pytest

from lookout.device.sources import Backoff, FrameGrabber, FrameSource, SourceUnavailable


class ScriptedCamera(FrameSource):
    """A live source that fails to open ``failures`` times, then delivers ``frames`` frames, then drops;
    ``failures=None`` never opens."""

    live = True

    def __init__(self, failures: int | None = None, frames: int = 0, then_fail: int | None = None) -> None:
        super().__init__("scripted camera")
        self.failures, self.frames, self.then_fail = failures, frames, then_fail
        self.opens = 0  # attempts, successful or not
        self._left = 0

    def open(self) -> None:
        self.opens += 1
        if self.failures is None or self.opens <= self.failures:
            raise SourceUnavailable("connection refused")
        if self.then_fail is not None:  # after the first success: fail again this many times
            self.failures, self.then_fail = self.opens + self.then_fail, None
        self._left = self.frames

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._left <= 0:
            raise SourceUnavailable("stopped delivering frames")
        self._left -= 1
        return np.zeros((4, 4, 3), np.uint8), 0.0


class FakeTime:
    """A clock that only moves when the grabber waits; stops the grabber after ``limit`` waits."""

    def __init__(self, limit: int) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.limit = limit

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return len(self.waits) >= self.limit


def _run_to_end(grabber: FrameGrabber, timeout: float = 10.0) -> None:
    grabber.start()
    assert grabber._thread is not None
    grabber._thread.join(timeout)
    assert not grabber._thread.is_alive(), "the grabber did not stop"


def _assert_schedule(waits: list[float], nominal: list[float], jitter: float = 0.2) -> None:
    assert len(waits) == len(nominal), waits
    for got, want in zip(waits, nominal):
        assert want * (1 - jitter) <= got <= want, f"waited {got:.3f} s where the schedule says {want} s"


def test_backoff_doubles_from_1s_to_30s_with_jitter():
    backoff = Backoff(1.0, 30.0, 0.2, random.Random(7))
    delays = [backoff.next_delay() for _ in range(9)]
    _assert_schedule(delays, [1, 2, 4, 8, 16, 30, 30, 30, 30])
    assert len({round(d / n, 6) for d, n in zip(delays, [1, 2, 4, 8, 16, 30, 30, 30, 30])}) > 1, "no jitter"
    backoff.reset()
    assert 0.8 <= backoff.next_delay() <= 1.0


def test_unreachable_camera_follows_the_schedule_one_log_line_per_attempt(caplog):
    fake = FakeTime(limit=8)
    camera = ScriptedCamera(failures=None)
    grabber = FrameGrabber(camera, wait=fake.wait, clock=fake.clock, rng=random.Random(1))
    with caplog.at_level(logging.WARNING, logger="lookout.device.sources"):
        _run_to_end(grabber)
    _assert_schedule(fake.waits, [1, 2, 4, 8, 16, 30, 30, 30])
    assert camera.opens == 8  # one attempt per wait, none in between
    lines = [r for r in caplog.records if r.getMessage() == "source.unavailable"]
    assert len(lines) == camera.opens
    fields = [r.lookout_fields for r in lines]
    assert [f["attempt"] for f in fields] == list(range(1, 9))
    assert [f["retry_in_s"] for f in fields] == [round(w, 2) for w in fake.waits]


def test_backoff_resets_once_frames_flow_and_a_flapping_stream_is_not_hammered():
    # Opens after 3 failures, delivers 5 frames, drops, fails twice more, comes back, delivers, drops,
    # then opens at every attempt.
    fake = FakeTime(limit=8)
    camera = ScriptedCamera(failures=3, frames=5, then_fail=2)
    grabber = FrameGrabber(camera, wait=fake.wait, clock=fake.clock, rng=random.Random(2))
    _run_to_end(grabber)
    # 3 failures (waits 1, 2, 4), open, frames, loss: back to 1 s, 2 failures (2, 4), open, frames, loss: 1 s ...
    _assert_schedule(fake.waits, [1, 2, 4, 1, 2, 4, 1, 1])
    assert grabber.frames >= 10 and grabber.reopens >= 2


def test_stream_that_opens_then_fails_at_once_backs_off():
    fake = FakeTime(limit=6)
    camera = ScriptedCamera(failures=0, frames=0)  # opens every time, never delivers a frame
    grabber = FrameGrabber(camera, wait=fake.wait, clock=fake.clock, rng=random.Random(3))
    _run_to_end(grabber)
    _assert_schedule(fake.waits, [1, 2, 4, 8, 16, 30])
    assert camera.opens == 6


def test_give_up_counts_time_on_the_grabbers_clock():
    fake = FakeTime(limit=100)
    grabber = FrameGrabber(
        ScriptedCamera(failures=None), wait=fake.wait, clock=fake.clock, give_up_after_s=60, rng=random.Random(4)
    )
    _run_to_end(grabber)
    assert grabber.finished and "gave up" in (grabber.error or "")
    assert 60 <= fake.now < 60 + 30  # gave up at the first attempt past the limit


def test_polling_consumer_does_not_cut_the_backoff_short():
    """Real time, bounded window: the device loop polls the frame slot every few ms while the camera
    is down. With backoff 0.25 s doubling to 1 s, 1.6 s allows at most 5 attempts (0, ~0.25, ~0.75,
    ~1.75 s, jitter only shortening waits by 20%); the old grabber made one every poll."""
    camera = ScriptedCamera(failures=None)
    grabber = FrameGrabber(camera, backoff=(0.25, 1.0)).start()
    try:
        end = time.monotonic() + 1.6
        while time.monotonic() < end:
            assert grabber.get(timeout=0.005) is None
        assert 2 <= camera.opens <= 5, f"{camera.opens} attempts in 1.6 s"
    finally:
        grabber.stop()


def test_stop_cuts_a_long_backoff_short():
    camera = ScriptedCamera(failures=None)
    grabber = FrameGrabber(camera, backoff=(30.0, 30.0)).start()
    deadline = time.monotonic() + 5
    while camera.opens < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stopped = threading.Event()
    threading.Thread(target=lambda: (grabber.stop(), stopped.set()), daemon=True).start()
    assert stopped.wait(3), "stop() waited for the 30 s backoff"


@pytest.mark.parametrize("jitter", [0.0, 0.5])
def test_jitter_bounds(jitter):
    backoff = Backoff(1.0, 30.0, jitter, random.Random(5))
    for nominal in (1, 2, 4, 8, 16, 30):
        delay = backoff.next_delay()
        assert nominal * (1 - jitter) <= delay <= nominal
