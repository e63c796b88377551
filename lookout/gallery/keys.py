"""Ed25519 keys for signing bundles (`lookout keys generate`) and checking them on the device.

The private key (PEM, PKCS#8) stays with whoever builds galleries; devices are
configured with the public key (PEM, SubjectPublicKeyInfo). The key id written
into each manifest is the first 16 hex digits of the SHA-256 of the raw public key.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lookout.digest import sha256_bytes
from lookout.errors import ConfigError, InputError
from lookout.files import MAX_KEY_FILE_BYTES, read_file_bytes
from lookout.gallery.format import MANIFEST, SIGNATURE

PRIVATE_NAME = "bundle-signing.key.pem"
PUBLIC_NAME = "bundle-signing.pub.pem"

# Where a key comes from: a PEM file, PEM bytes, or a key already loaded.
PublicKeySource = Path | bytes | Ed25519PublicKey
PrivateKeySource = Path | bytes | Ed25519PrivateKey


def generate_keys(out_dir: Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new key pair into ``out_dir``; the private key is readable by its owner only."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    if not overwrite and (private_path.exists() or public_path.exists()):
        raise ConfigError(f"{out_dir}: a key pair already exists there (refusing to overwrite it)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(public_pem(key.public_key()))
    return private_path, public_path


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _read(source: Path | bytes, what: str) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), f"{what} (bytes)"
    try:
        return read_file_bytes(source, MAX_KEY_FILE_BYTES, what), str(source)
    except InputError as err:
        raise ConfigError(f"{source}: cannot read {err.reason}") from None


def load_private_key(source: PrivateKeySource) -> Ed25519PrivateKey:
    if isinstance(source, Ed25519PrivateKey):
        return source
    data, name = _read(source, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{name}: not a PEM private key without password ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{name}: not an Ed25519 private key")
    return key


def load_public_key(source: PublicKeySource) -> Ed25519PublicKey:
    if isinstance(source, Ed25519PublicKey):
        return source
    data, name = _read(source, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{name}: not a PEM public key ({err})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{name}: not an Ed25519 public key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_bytes(raw)[:16]


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
        return True
    except InvalidSignature:
        return False


def write_signed_manifest(bundle_dir: Path, manifest_bytes: bytes, private_key: PrivateKeySource) -> None:
    """Write a bundle's ``manifest.json`` and, beside it, ``manifest.sig`` (base64 Ed25519 over those bytes)."""
    key = load_private_key(private_key)
    (Path(bundle_dir) / MANIFEST).write_bytes(manifest_bytes)
    (Path(bundle_dir) / SIGNATURE).write_bytes(base64.b64encode(sign(key, manifest_bytes)) + b"\n")
