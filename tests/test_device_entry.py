"""`python -m lookout.device`: the device's commands with the device part alone (less resident memory)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def test_device_entry_runs_the_device_commands_without_the_other_parts():
    probe = (
        "import sys; from lookout.device.__main__ import main; rc = main(['run', '--example-config']); "
        "other = sorted({m.split('.')[1] for m in sys.modules if m.split('.')[0] == 'lookout' and '.' in m} "
        "& {'sync', 'relay', 'evaluation', 'console', 'cli', 'demo', 'greengrass'}); print('OTHER', other, rc)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "device_id:" in out.stdout  # the example config
    assert "OTHER [] 0" in out.stdout, out.stdout[-300:]
