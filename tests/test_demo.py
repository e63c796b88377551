"""`lookout demo` as a user runs it: a subprocess, real broker, relay, device; the output names the right people."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.broker import require_mosquitto
from tests.helpers import FACES_DEV, STRANGERS

pytestmark = pytest.mark.slow  # see README, Tests


def _run_demo(*extra: str) -> str:
    require_mosquitto()
    proc = subprocess.run(
        [sys.executable, "-m", "lookout", "demo", *extra], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def _table(out: str) -> dict[str, tuple[set[str], set[str]]]:
    """photo -> (people in it, people matched) from the summary table."""
    rows = {}
    lines = out.split("matched by the device", 1)[1].splitlines()[1:]
    for line in lines:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        photo, expected, matched = cells[0], cells[1], cells[2]
        parse = lambda c: set() if c == "-" else {p.strip() for p in c.split(",")}  # noqa: E731
        rows[photo] = (parse(expected), parse(matched))
    return rows


def test_demo_finds_the_right_people_and_no_stranger(model_store):
    if (FACES_DEV / "groups.csv").exists():
        out = _run_demo("--faces-dev", str(FACES_DEV))
        rows = _table(out)
        for photo in ("bbt1", "bbt3", "bbt4", "bbt5"):
            expected, matched = rows[photo]
            assert matched <= expected, f"{photo}: matched {matched - expected} who are not in it"
            assert len(matched) >= len(expected) - 1, f"{photo}: only {matched} of {expected}"
        for stranger in STRANGERS:
            assert rows[stranger][1] == set(), f"stranger photo {stranger} matched {rows[stranger][1]}"
        assert {"amy", "bernadette", "penny", "sheldon", "leonard", "howard", "raj"} <= set().union(
            *(m for _, m in rows.values())
        )
        assert "stuart" not in out.split("[8/9]", 1)[1]  # enrolled, never in the video
    else:
        out = _run_demo("--faces-dev", "/nonexistent")
        rows = _table(out)
        assert rows["grace_hopper.jpg (mirrored)"][1] == {"grace_hopper"}
        assert rows["coffee.png (no one)"][1] == set()
    assert "wrong matches: 0" in out and "strangers matched: 0" in out
    assert "--- to duty-officer" in out and "Lookout alert #1" in out  # the SMS texts
    for step in ("[1/9]", "[4/9]", "[5/9]", "[8/9]", "[9/9]"):
        assert step in out
    assert "Everything the demo started has been stopped" in out


def test_demo_without_faces_dev_uses_faces_shipped_in_packages(model_store, tmp_path):
    out = _run_demo("--faces-dev", str(tmp_path / "absent"), "--keep", str(tmp_path / "work"))
    assert "no faces-dev found" in out
    rows = _table(out)
    assert rows["grace_hopper.jpg (mirrored)"][1] == {"grace_hopper"}
    assert rows["astronaut.png (zooming)"][1] <= {"eileen_collins"}
    assert rows["coffee.png (no one)"][1] == set()
    assert (tmp_path / "work" / "sms.jsonl").is_file()  # --keep keeps the work folder
