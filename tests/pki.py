"""Throwaway X.509 certificates for TLS tests (the ``pki`` fixture in conftest.py uses them).

``make_pki(folder)`` writes a certificate authority, a broker certificate valid for
127.0.0.1 and localhost, and a client certificate, all signed by that CA, as PEM files.
Call it twice for two unrelated authorities (a wrong CA, a foreign client certificate).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    """A one-day certificate for ``subject``'s ``key``, signed by ``issuer_key`` (self-signed when it is ``key``)."""
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def write_pem(path: Path, *, cert: x509.Certificate | None = None, key=None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


def make_pki(folder: Path, name: str = "test") -> dict[str, Path]:
    """PEM files ``ca``, ``server``, ``server_key``, ``client``, ``client_key`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert(f"{name}-ca", ca_key, _name(f"{name}-ca"), ca_key, ca=True)
    files = {"ca": write_pem(folder / f"{name}-ca.pem", cert=ca)}
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = make_cert(f"{name}-{role}", key, ca.subject, ca_key, server=role == "server")
        files[role] = write_pem(folder / f"{name}-{role}.pem", cert=cert)
        files[f"{role}_key"] = write_pem(folder / f"{name}-{role}.key", key=key)
    return files


def mosquitto_tls_config(pki: dict[str, Path]) -> str:
    """mosquitto listener settings: TLS with ``pki``'s broker certificate, client certificates required."""
    return (
        f"cafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n"
        "require_certificate true\ntls_version tlsv1.2\n"
    )
