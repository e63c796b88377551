"""``lookout.mqtt`` against a real mosquitto with TLS and required client certificates (as AWS IoT Core).

Certificates: the ``pki`` fixture (tests/pki.py through conftest.py), shared with the device's TLS test.
"""

from __future__ import annotations

import threading

import pytest

from lookout.mqtt import MqttSettings, TlsSettings, connect, make_client
from tests.pki import mosquitto_tls_config

pytestmark = pytest.mark.broker


def _connects(settings: MqttSettings) -> bool:
    client = make_client(settings, client_id="tls-test")
    ok, done = threading.Event(), threading.Event()

    def on_connect(c, u, f, rc, p) -> None:
        if not rc.is_failure:
            ok.set()
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *a: done.set()
    try:
        connect(client, settings, blocking=True)
    except Exception:
        return False
    client.loop_start()
    try:
        done.wait(3)
        return ok.is_set()
    finally:
        client.disconnect()
        client.loop_stop()


def test_client_certificate_connection(mosquitto_factory, pki):
    broker = mosquitto_factory(extra_config=mosquitto_tls_config(pki))
    tls = TlsSettings(ca_file=pki["ca"], cert_file=pki["client"], key_file=pki["client_key"])
    assert _connects(MqttSettings(host="127.0.0.1", port=broker.port, tls=tls))
    no_client_cert = TlsSettings(ca_file=pki["ca"])
    assert not _connects(MqttSettings(host="127.0.0.1", port=broker.port, tls=no_client_cert))
