"""``lookout.mqtt`` against a real mosquitto with TLS and required client certificates (as AWS IoT Core)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lookout.mosquitto import LocalMosquitto
from lookout.mqtt import MqttSettings, TlsSettings, connect, make_client
from tests.broker import require_mosquitto

pytestmark = pytest.mark.broker


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool = False, san: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert=None, key=None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@pytest.fixture
def pki(tmp_path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, ca_key, ca=True)
    files = {"ca": _write(tmp_path / "ca.pem", ca)}
    for name, san in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        files[name] = _write(tmp_path / f"{name}.pem", _cert(name, key, ca.subject, ca_key, san=san))
        files[f"{name}_key"] = _write(tmp_path / f"{name}.key", key=key)
    return files


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


def test_client_certificate_connection(tmp_path, pki):
    binary = require_mosquitto()
    extra = (
        f"cafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n"
        "require_certificate true\ntls_version tlsv1.2\n"
    )
    broker = LocalMosquitto(workdir=tmp_path / "broker", binary=binary, extra_config=extra)
    (tmp_path / "broker").mkdir()
    broker.start()
    try:
        tls = TlsSettings(ca_file=pki["ca"], cert_file=pki["client"], key_file=pki["client_key"])
        assert _connects(MqttSettings(host="127.0.0.1", port=broker.port, tls=tls))
        no_client_cert = TlsSettings(ca_file=pki["ca"])
        assert not _connects(MqttSettings(host="127.0.0.1", port=broker.port, tls=no_client_cert))
    finally:
        broker.close()
