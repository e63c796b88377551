"""The relay's SQL migrations ship in the wheel (a relay installed from it, on a VM or in a container, finds its
schema): build lookout's wheel with pip from a copy of the source and read its file list.

Slow: pip builds in an isolated environment (setuptools, wheel from the package index, as
``greengrass package`` does).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("lookout", "models", "sync", "device", "relay", "evaluation", "greengrass", "console", "cli", "demo")


@pytest.mark.slow
def test_the_wheel_holds_every_relay_migration(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in SOURCES:
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore, symlinks=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(tmp_path / "out"),
         str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [wheel] = (tmp_path / "out").glob("lookout-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"lookout/relay/schema/{p.parent.name}/{p.name}" for p in (ROOT / "relay" / "schema").glob("*/*.sql")}
    assert shipped and {n for n in shipped if "/sqlite/" in n} and {n for n in shipped if "/postgresql/" in n}
    assert shipped <= names, f"missing from the wheel: {sorted(shipped - names)}"
    assert "lookout/relay/migrate.py" in names and "lookout/console/templates/fleet.html" in names
