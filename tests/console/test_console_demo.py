"""`./run console` as a user runs it: the demo holds its alerts for review, then the console serves them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import httpx2 as httpx
import pytest

from tests.broker import require_mosquitto

pytestmark = pytest.mark.slow

CONSOLE_LINE = re.compile(r"open (http://127\.0\.0\.1:\d+) in a browser and log in as  demo  /  (\S+)")


def _read_until_console(proc: subprocess.Popen, out: list[str]) -> re.Match | None:
    for line in proc.stdout:
        out.append(line)
        found = CONSOLE_LINE.search(line)
        if found:
            return found
    return None


def test_a_reviewer_works_the_demos_alerts_in_the_console(model_store, tmp_path):
    require_mosquitto()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookout", "demo", "--console", "--faces-dev", "/nonexistent", "--keep", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its broker and relay in its group: a failure below ends them all
    )
    out: list[str] = []
    timer = threading.Timer(600, lambda: os.killpg(proc.pid, signal.SIGKILL))  # a bound on the whole demo
    timer.start()
    try:
        found = _read_until_console(proc, out)
        assert found, "".join(out)[-4000:]
        assert "alerts for review   2" in "".join(out)
        url, password = found.groups()
        with httpx.Client(base_url=url) as web:
            page = web.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            web.post("/login", data={"username": "demo", "password": password, "csrf": csrf})
            review = web.get("/review", follow_redirects=True)
            assert "Waiting for review (2)" in review.text and "grace_hopper" in review.text
            csrf = re.search(r'name="csrf" value="([^"]+)"', review.text).group(1)
            first = re.search(r"Alert #(\d+)", review.text).group(1)
            done = web.post(f"/review/{first}/confirm", data={"csrf": csrf}, follow_redirects=True)
            assert f"Alert {first} confirmed" in done.text and "Waiting for review (1)" in done.text
            fleet = web.get("/fleet").text
            assert 'data-device="demo-cam-1" data-state="offline"' in fleet  # its retained status after it stopped
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest[-4000:]
    finally:
        timer.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
