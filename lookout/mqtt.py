"""MQTT connection settings and the client factory shared by the device and the relay.

Always MQTT v5 (shared subscriptions, session expiry, reason codes) with paho-mqtt's
``CallbackAPIVersion.VERSION2`` callbacks. TLS with client certificates (as AWS IoT
Core requires), username/password, or plain TCP on loopback — all from config.

The password is never part of the settings: ``password_env`` names the environment
variable that holds it, so config files and logs never contain it.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lookout.errors import ConfigError, InputError
from lookout.log import get_logger

log = get_logger(__name__)

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class TlsSettings(BaseModel):
    """TLS for the broker connection. ``cert_file`` + ``key_file`` give a client certificate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = Field(None, description="CA bundle to verify the broker; system CAs if unset")
    cert_file: Path | None = Field(None, description="client certificate (PEM)")
    key_file: Path | None = Field(None, description="client private key (PEM)")
    insecure: bool = Field(False, description="skip broker hostname verification (testing only)")

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both for a client certificate, or neither")
        return self


class MqttSettings(BaseModel):
    """Where and how to connect to the broker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = Field("", max_length=128, description="stable id for a persistent session; random if empty")
    keepalive: int = Field(30, ge=5, le=3600, description="seconds")
    username: str | None = None
    password_env: str | None = Field(None, description="name of the environment variable holding the password")
    tls: TlsSettings | None = None
    clean_start: bool = Field(True, description="False keeps the session (and queued QoS 1 messages) across reconnects")
    session_expiry: int = Field(0, ge=0, description="seconds the broker keeps the session after a disconnect")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to wait for the first connection")

    def password(self) -> str | None:
        """The password from the environment, or None when no ``password_env`` is set."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(f"mqtt.password_env: environment variable {self.password_env} is not set")
        return value

    def describe(self, client_id: str | None = None) -> dict[str, object]:
        """Fields safe to log (no secrets); ``client_id``: the one the client was made with, if not the setting's."""
        return {
            "host": self.host,
            "port": self.port,
            "client_id": (self.client_id if client_id is None else client_id) or "(random)",
            "tls": self.tls is not None,
            "client_cert": bool(self.tls and self.tls.cert_file),
            "username": self.username or "",
        }


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """The TLS context ``tls`` describes, its files read and parsed (``--check-config`` uses it too: a CA file
    that holds no certificate is refused here, not at the first connection)."""
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"mqtt.tls.{name}: {path} does not exist or is not a file")
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(f"mqtt.tls: cannot load certificates: {err}") from err
    return context


def _configure_tls(client: paho.Client, tls: TlsSettings) -> None:
    context = tls_context(tls)
    if tls.insecure:
        log.warning(
            "mqtt.tls_insecure",
            effect="the broker's certificate is NOT checked against its host name: anyone on the path can pose "
            "as the broker and read every event",
            hint="testing only; remove mqtt.tls.insecure for anything real",
        )
        context.check_hostname = False
    client.tls_set_context(context)
    client.tls_insecure_set(tls.insecure)


def make_client(
    settings: MqttSettings,
    *,
    client_id: str | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
    manual_ack: bool = False,
) -> paho.Client:
    """A configured (not yet connected) paho client: MQTT v5, VERSION2 callbacks.

    ``will`` is ``(topic, payload, qos, retain)`` for a last-will message.
    """
    cid = settings.client_id if client_id is None else client_id
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=cid,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password())
    if settings.tls is not None:
        _configure_tls(client, settings.tls)
    elif settings.host not in _LOOPBACK:
        log.warning("mqtt.plaintext", host=settings.host, hint="set mqtt.tls for anything beyond loopback")
    if will is not None:
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(settings: MqttSettings) -> Properties | None:
    """CONNECT properties: the session expiry interval when one is set."""
    if not settings.session_expiry:
        return None
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho's constructor is untyped
    props.SessionExpiryInterval = settings.session_expiry
    return props


def connect(
    client: paho.Client, settings: MqttSettings, *, blocking: bool = False, client_id: str | None = None
) -> None:
    """Connect ``client`` per ``settings``; ``blocking=False`` lets ``loop_start`` do it and retry.
    ``client_id``: the id ``client`` was made with when not the setting's (logged as it is)."""
    start = client.connect if blocking else client.connect_async
    log.info("mqtt.connecting", **settings.describe(client_id))
    try:
        start(
            host=settings.host,
            port=settings.port,
            keepalive=settings.keepalive,
            clean_start=settings.clean_start,
            properties=connect_properties(settings),
        )
    except (OSError, ValueError) as err:
        raise InputError(f"mqtt broker {settings.host}:{settings.port}", f"cannot connect: {err}") from err
