"""A real mosquitto broker for tests, on 127.0.0.1 and a free port.

Import the fixtures you use explicitly in a test module::

    from tests.broker import mosquitto  # noqa: F401

    def test_something(mosquitto):
        settings = MqttSettings(host=mosquitto.host, port=mosquitto.port)
        ...
        mosquitto.stop()      # an outage
        mosquitto.start()     # back, same port

Fixtures:

- ``mosquitto``: a started broker, persistence off, stopped after the test.
- ``mosquitto_persistent``: the same with persistence on (queued QoS 1 messages survive ``restart()``).
- ``mosquitto_factory``: call it (``port=``, ``persistence=``) for more brokers in one test.

Tests that use them are skipped, saying why, when no mosquitto binary is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from lookout.mosquitto import LocalMosquitto, find_mosquitto

__all__ = ["LocalMosquitto", "mosquitto", "mosquitto_factory", "mosquitto_persistent", "require_mosquitto"]


def require_mosquitto() -> str:
    """The mosquitto binary path, or skip the calling test with a clear message."""
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto binary not found (apt-get install mosquitto, or set LOOKOUT_MOSQUITTO)")
    return binary


class _Brokers:
    """Brokers started for one test, closed at its end."""

    def __init__(self, workdir) -> None:
        self.binary = require_mosquitto()
        self.workdir = workdir
        self.brokers: list[LocalMosquitto] = []

    def make(self, port: int | None = None, *, persistence: bool = False) -> LocalMosquitto:
        workdir = self.workdir / f"mosquitto-{len(self.brokers)}"
        workdir.mkdir(parents=True)
        broker = LocalMosquitto(port, persistence=persistence, workdir=workdir, binary=self.binary)
        self.brokers.append(broker)
        return broker.start()

    def close(self) -> None:
        for broker in self.brokers:
            broker.close()


@pytest.fixture
def mosquitto_factory(tmp_path) -> Iterator[Callable[..., LocalMosquitto]]:
    brokers = _Brokers(tmp_path)
    yield brokers.make
    brokers.close()


@pytest.fixture
def mosquitto(tmp_path) -> Iterator[LocalMosquitto]:
    brokers = _Brokers(tmp_path)
    yield brokers.make()
    brokers.close()


@pytest.fixture
def mosquitto_persistent(tmp_path) -> Iterator[LocalMosquitto]:
    brokers = _Brokers(tmp_path)
    yield brokers.make(persistence=True)
    brokers.close()
