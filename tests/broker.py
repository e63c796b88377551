"""Real mosquitto brokers for tests, on 127.0.0.1 and a free port (the fixtures are in conftest.py).

Tests that use them are skipped, saying why, when no mosquitto binary is installed.
"""

from __future__ import annotations

import pytest

from lookout.mosquitto import LocalMosquitto, find_mosquitto


def require_mosquitto() -> str:
    """The mosquitto binary path, or skip the calling test with a clear message."""
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto binary not found (apt-get install mosquitto, or set LOOKOUT_MOSQUITTO)")
    return binary


class Brokers:
    """Brokers started for one test, closed at its end."""

    def __init__(self, workdir) -> None:
        self.binary = require_mosquitto()
        self.workdir = workdir
        self.brokers: list[LocalMosquitto] = []

    def make(self, port: int | None = None, *, persistence: bool = False, extra_config: str = "") -> LocalMosquitto:
        """A started broker; ``extra_config`` adds listener settings (TLS, see tests/pki.py)."""
        workdir = self.workdir / f"mosquitto-{len(self.brokers)}"
        workdir.mkdir(parents=True)
        broker = LocalMosquitto(
            port, persistence=persistence, workdir=workdir, binary=self.binary, extra_config=extra_config
        )
        self.brokers.append(broker)
        return broker.start()

    def close(self) -> None:
        for broker in self.brokers:
            broker.close()
