"""Relay configuration: one YAML file, environment overrides, validated at start.

Overrides: ``LOOKOUT_RELAY__<SECTION>__<KEY>=value`` (double underscores between
levels, case-insensitive keys; the value is read as YAML, so ``8080`` is a number and
``false`` a boolean). Example: ``LOOKOUT_RELAY__MQTT__HOST=broker.local``.

Secrets (broker password, Twilio token, webhook secret) are never in the file: the
config names the environment variable that holds each one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lookout.config_file import load_settings
from lookout.errors import InputError
from lookout.mqtt import MqttSettings
from lookout.topics import DEFAULT_PREFIX, check_prefix

ENV_PREFIX = "LOOKOUT_RELAY__"
E164 = r"^\+[1-9][0-9]{6,14}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicSettings(_Strict):
    prefix: str = DEFAULT_PREFIX
    share_group: str | None = Field(
        "lookout-relay", description="MQTT v5 shared-subscription group; null subscribes alone"
    )

    @model_validator(mode="after")
    def _check(self) -> TopicSettings:
        try:
            check_prefix(self.prefix)
        except InputError as err:
            raise ValueError(str(err)) from None
        return self


class StoreSettings(_Strict):
    path: Path = Path("relay.sqlite")
    retention_days: float = Field(30, gt=0, description="history, alerts and reviews older than this are deleted")
    seen_ids_days: float = Field(7, gt=0, description="how long an event id is remembered for idempotency")
    synchronous: Literal["normal", "full"] = Field("full", description="full: every accepted event is fsynced")


class DedupSettings(_Strict):
    window_s: float = Field(60, ge=0, description="sightings of one person within this many seconds are one alert")


class DirectorySettings(_Strict):
    path: Path | None = Field(None, description="gallery.sqlite from the gallery bundle; unset: no person details")


class GalleryPolicy(_Strict):
    purpose: Literal["accountability", "missing-persons"] = "missing-persons"
    review: bool | None = Field(None, description="hold alerts for human review; default on for accountability")

    @property
    def needs_review(self) -> bool:
        return self.review if self.review is not None else self.purpose == "accountability"


class SnsNotifier(_Strict):
    type: Literal["sns"]
    region: str = "us-east-1"
    endpoint_url: str | None = None
    sender_id: str | None = Field(None, pattern=r"^[A-Za-z0-9]{1,11}$")
    origination_number: str | None = Field(None, pattern=E164)
    sms_type: Literal["Transactional", "Promotional"] = "Transactional"
    max_price_usd: float | None = Field(None, gt=0)
    timeout_s: float = Field(5, gt=0)


class TwilioNotifier(_Strict):
    type: Literal["twilio"]
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token_env: str = "TWILIO_AUTH_TOKEN"
    from_number: str | None = Field(None, pattern=E164)
    messaging_service_sid: str | None = Field(None, pattern=r"^MG[0-9a-fA-F]{32}$")
    base_url: str = "https://api.twilio.com"
    timeout_s: float = Field(5, gt=0)

    @model_validator(mode="after")
    def _sender(self) -> TwilioNotifier:
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("set from_number or messaging_service_sid")
        return self


class WebhookNotifier(_Strict):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret_env: str | None = Field(None, description="environment variable with the HMAC-SHA256 key")
    timeout_s: float = Field(5, gt=0)


class ConsoleNotifier(_Strict):
    type: Literal["console"]
    path: Path | None = Field(None, description="append JSON lines to this file instead of printing")


NotifierSettings = Annotated[
    SnsNotifier | TwilioNotifier | WebhookNotifier | ConsoleNotifier, Field(discriminator="type")
]


class Recipient(_Strict):
    name: str = Field(min_length=1, max_length=64)
    notifier: str = Field(description="name of an entry under notifiers")
    address: str = Field("", description="phone number (E.164) for SMS notifiers; unused for webhook/console")
    galleries: list[str] = Field(default_factory=lambda: ["*"])
    jurisdictions: list[str] = Field(default_factory=lambda: ["*"])

    def wants(self, gallery_id: str, jurisdiction: str | None) -> bool:
        in_gallery = "*" in self.galleries or gallery_id in self.galleries
        in_place = "*" in self.jurisdictions or (jurisdiction is not None and jurisdiction in self.jurisdictions)
        return in_gallery and in_place


class Limit(_Strict):
    count: int = Field(ge=1)
    per_s: float = Field(gt=0)


class RateLimitSettings(_Strict):
    per_recipient: Limit | None = Limit(count=10, per_s=3600)
    overall: Limit | None = Limit(count=200, per_s=3600)


class RetrySettings(_Strict):
    initial_s: float = Field(1, gt=0)
    max_s: float = Field(300, gt=0)
    give_up_after_s: float = Field(86400, gt=0, description="a delivery still failing after this is marked failed")


class ReviewSettings(_Strict):
    url_template: str | None = Field(
        None, description="link in messages, e.g. https://lookout.example/review/{alert_id}"
    )
    suppress_for_s: float = Field(
        86400, ge=0, description="after a rejection, the same person at the same device is suppressed this long"
    )


class MetricsSettings(_Strict):
    port: int | None = Field(None, ge=0, le=65535, description="serve Prometheus text on 127.0.0.1:port; unset: off")
    host: str = "127.0.0.1"
    log_every_s: float = Field(60, gt=0)


_RELAY_MQTT = {"client_id": "lookout-relay", "clean_start": False, "session_expiry": 86400}


class RelayConfig(_Strict):
    mqtt: MqttSettings = MqttSettings(**_RELAY_MQTT)
    topics: TopicSettings = TopicSettings()
    store: StoreSettings = StoreSettings()
    dedup: DedupSettings = DedupSettings()
    directory: DirectorySettings = DirectorySettings()
    galleries: dict[str, GalleryPolicy] = Field(default_factory=lambda: {"default": GalleryPolicy()})
    notifiers: dict[str, NotifierSettings] = Field(default_factory=lambda: {"console": ConsoleNotifier(type="console")})
    recipients: list[Recipient] = Field(default_factory=lambda: [Recipient(name="console", notifier="console")])
    rate_limits: RateLimitSettings = RateLimitSettings()
    retry: RetrySettings = RetrySettings()
    review: ReviewSettings = ReviewSettings()
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="before")
    @classmethod
    def _relay_mqtt_defaults(cls, data: object) -> object:
        """The relay keeps a persistent session so QoS 1 events wait for it while it restarts."""
        if isinstance(data, dict):
            mqtt = data.get("mqtt")
            if isinstance(mqtt, dict):
                data = {**data, "mqtt": {**_RELAY_MQTT, **mqtt}}
        return data

    @model_validator(mode="after")
    def _cross_check(self) -> RelayConfig:
        names = set()
        for r in self.recipients:
            if r.name in names:
                raise ValueError(f"recipients: name {r.name!r} is used twice")
            names.add(r.name)
            kind = self.notifiers.get(r.notifier)
            if kind is None:
                raise ValueError(f"recipients.{r.name}: notifier {r.notifier!r} is not defined under notifiers")
            if kind.type in ("sns", "twilio") and not re.match(E164, r.address):
                raise ValueError(
                    f"recipients.{r.name}: address {r.address!r} is not an E.164 phone number like +15555550100"
                )
        if "default" not in self.galleries:
            raise ValueError("galleries: a 'default' entry is required (used for events without a known gallery)")
        return self

    def gallery(self, gallery_id: str | None) -> GalleryPolicy:
        return self.galleries.get(gallery_id or "default") or self.galleries["default"]


def _resolve_paths(cfg: RelayConfig, base: Path) -> RelayConfig:
    def rel(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p)

    updates = {
        "store": cfg.store.model_copy(update={"path": rel(cfg.store.path)}),
        "directory": cfg.directory.model_copy(update={"path": rel(cfg.directory.path)}),
        "notifiers": {
            k: (n.model_copy(update={"path": rel(n.path)}) if isinstance(n, ConsoleNotifier) else n)
            for k, n in cfg.notifiers.items()
        },
    }
    return cfg.model_copy(update=updates)


def load_config(path: Path | str | None, environ: dict[str, str] | None = None) -> RelayConfig:
    """Read, override from the environment (``LOOKOUT_RELAY__A__B=value``), and validate.
    Raises ConfigError naming the file and every bad field."""
    cfg, base = load_settings(RelayConfig, path, env_prefix=ENV_PREFIX, what="relay config", environ=environ)
    return _resolve_paths(cfg, base)
