"""Relay configuration: one YAML file, environment overrides, validated at start.

Overrides: ``LOOKOUT_RELAY__<SECTION>__<KEY>=value`` (double underscores between
levels, case-insensitive keys; the value is read as YAML, so ``8080`` is a number and
``false`` a boolean). Example: ``LOOKOUT_RELAY__MQTT__HOST=broker.local``.

Secrets (broker password, Twilio token, webhook secret) are never in the file: the
config names the environment variable that holds each one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lookout.config_file import load_settings
from lookout.errors import ConfigError, InputError
from lookout.gallery.jurisdiction import parse_jurisdiction
from lookout.gallery.purpose import Purpose
from lookout.mqtt import MqttSettings
from lookout.redact import redact_dsn, redact_url
from lookout.topics import DEFAULT_PREFIX, TopicPrefix

ENV_PREFIX = "LOOKOUT_RELAY__"
E164 = r"^\+[1-9][0-9]{6,14}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicSettings(_Strict):
    prefix: TopicPrefix = DEFAULT_PREFIX
    share_group: str | None = Field(
        "lookout-relay", description="MQTT v5 shared-subscription group; null subscribes alone"
    )


_DSN_PASSWORD = re.compile(r"(^|\s)password\s*=|^postgres(ql)?://[^/@?]*:[^/@?]*@|[?&]password=", re.IGNORECASE)


class StoreSettings(_Strict):
    type: Literal["sqlite", "postgresql"] = Field(
        "sqlite", description="sqlite: one file, one relay host; postgresql: shared by a fleet of relays"
    )
    path: Path = Path("relay.sqlite")
    synchronous: Literal["normal", "full"] = Field("full", description="sqlite: full fsyncs every accepted batch")
    dsn: str | None = Field(
        None, description="postgresql: libpq connection string or URI without a password, e.g. host=db dbname=lookout"
    )
    password_env: str | None = Field(
        None, description="postgresql: environment variable holding the password (else libpq's password file)"
    )
    pool_size: int = Field(4, ge=2, le=64, description="postgresql: connections per relay process")
    connect_timeout_s: float = Field(10, gt=0, description="postgresql: wait this long for the database at start")
    claim_lease_s: float = Field(
        120,
        gt=0,
        description="sqlite: a delivery claimed by a relay process that died is retried after this (at least"
        " 32 notifier timeouts + 30 s, so a slow batch is never sent twice)",
    )
    retention_days: float = Field(30, gt=0, description="history, alerts and reviews older than this are deleted")
    seen_ids_days: float = Field(7, gt=0, description="how long an event id is remembered for idempotency")

    @model_validator(mode="after")
    def _check(self) -> StoreSettings:
        if self.type == "postgresql" and not self.dsn:
            raise ValueError("dsn is required when type is postgresql")
        if self.dsn and _DSN_PASSWORD.search(self.dsn):
            raise ValueError(
                "dsn must not contain a password: name an environment variable in password_env,"
                " or use a libpq password file (passfile=, PGPASSFILE or ~/.pgpass)"
            )
        return self


class DedupSettings(_Strict):
    window_s: float = Field(60, ge=0, description="sightings of one person within this many seconds are one alert")


class DirectorySettings(_Strict):
    path: Path | None = Field(
        None,
        description="gallery.sqlite of the newest gallery bundle: person details, the jurisdiction the policy"
        " decides on, and the withdrawal ledger; unset: the relay cannot check (see policy.require_directory)",
    )


class PolicySettings(_Strict):
    """The relay's own check of every event, after the device's (defence in depth, docs/relay.md)."""

    file: Path | None = Field(
        None, description="policy file (YAML/JSON, as for gallery build and devices); unset: the built-in policy"
    )
    require_directory: bool = Field(
        True,
        description="refuse to start with recipients but no directory for a gallery (the relay could check"
        " neither policy nor membership); false: alert on the devices' word alone for such galleries",
    )


class GalleryPolicy(_Strict):
    purpose: Purpose = Field(
        "missing-persons", description="what the gallery is for (lookout.gallery.purpose); its bundle must say the same"
    )
    review: bool | None = Field(None, description="hold alerts for human review; default on for accountability")
    directory: Path | None = Field(None, description="this gallery's gallery.sqlite; unset: directory.path")

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
    url: str | None = Field(
        None, pattern=r"^https?://", description="the endpoint; shown redacted (path and query) in logs and output"
    )
    url_env: str | None = Field(
        None,
        min_length=1,
        description="environment variable holding the URL instead, for endpoints whose URL is the credential"
        " (Slack, Teams, Discord incoming webhooks)",
    )
    secret_env: str | None = Field(None, description="environment variable with the HMAC-SHA256 key")
    timeout_s: float = Field(5, gt=0)
    include_crop: bool = Field(
        False, description="add the sighting crop (base64 JPEG) when the device sent one (its policy allowed it)"
    )

    @model_validator(mode="after")
    def _one_url(self) -> WebhookNotifier:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and url_env")
        return self

    def resolved_url(self, name: str, environ: Mapping[str, str]) -> str:
        """The URL to POST to: ``url``, or the value of the variable ``url_env`` names (ConfigError if unset)."""
        if self.url is not None:
            return self.url
        value = environ.get(self.url_env or "", "").strip()
        if not value:
            raise ConfigError(f"notifiers.{name}.url_env: environment variable {self.url_env} is not set")
        if not value.startswith(("https://", "http://")):
            raise ConfigError(f"notifiers.{name}.url_env: {self.url_env} does not hold an http(s) URL")
        return value


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
    jurisdictions: list[str] = Field(
        default_factory=lambda: ["*"],
        description="people's jurisdictions this recipient is told about: ISO 3166-2 codes or names (California is"
        " US-CA), each covering its subdivisions (US-CA covers US-CA-LA; US covers every state), or *",
    )

    @field_validator("jurisdictions")
    @classmethod
    def _jurisdictions(cls, values: list[str]) -> list[str]:
        """Read like every jurisdiction (attack A42: a raw "California" never matched the stored US-CA, and
        nobody was texted); one that cannot be read, or may mean several places, stops the relay at start."""
        out = []
        for value in values:
            if value.strip() == "*":
                out.append("*")
                continue
            try:
                parsed = parse_jurisdiction(value)
            except InputError as err:
                raise ValueError(f"{err.source}: {err.reason}") from None
            if parsed.ambiguous:
                raise ValueError(f"{value!r} may mean {' or '.join(parsed.readings)}: give one ISO 3166-2 code")
            out.append(parsed.code)
        return out

    def wants(self, gallery_id: str, jurisdiction: str | None) -> bool:
        in_gallery = "*" in self.galleries or gallery_id in self.galleries
        return in_gallery and ("*" in self.jurisdictions or self._covers(jurisdiction))

    def _covers(self, jurisdiction: str | None) -> bool:
        if jurisdiction is None or not jurisdiction.strip():
            return False
        try:
            readings = parse_jurisdiction(jurisdiction).readings
        except InputError:
            return False
        return any(code == mine or code.startswith(mine + "-") for code in readings for mine in self.jurisdictions)


class Limit(_Strict):
    count: int = Field(ge=1)
    per_s: float = Field(gt=0)


class RateLimitSettings(_Strict):
    """Flood protection. The defaults leave room for many people seen at once by many cameras (60 alerts
    per recipient in any 10 minutes, one per person per dedup window) and stop a runaway or spoofed
    device from costing thousands of SMS; what they hold is summarised after ``summary_after_s``."""

    per_recipient: Limit | None = Limit(count=60, per_s=600)
    overall: Limit | None = Limit(count=600, per_s=600)
    summary_after_s: float = Field(
        60, gt=0, description="held alerts are summarised to their recipient this long after the first was held"
    )


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


class GapSettings(_Strict):
    grace_s: float = Field(
        120, gt=0, description="a missing sequence number is a gap once the next one came this long ago"
    )
    scan_every_s: float = Field(15, gt=0)


class MetricsSettings(_Strict):
    port: int | None = Field(None, ge=0, le=65535, description="serve Prometheus text on 127.0.0.1:port; unset: off")
    host: str = "127.0.0.1"
    log_every_s: float = Field(60, gt=0)


_RELAY_MQTT = {"client_id": "lookout-relay", "clean_start": False, "session_expiry": 86400}


def _console_only() -> dict[str, NotifierSettings]:
    """The notifiers of a relay configured with none: the console."""
    return {"console": ConsoleNotifier(type="console")}


class RelayConfig(_Strict):
    mqtt: MqttSettings = MqttSettings(**_RELAY_MQTT)
    topics: TopicSettings = TopicSettings()
    store: StoreSettings = StoreSettings()
    dedup: DedupSettings = DedupSettings()
    directory: DirectorySettings = DirectorySettings()
    policy: PolicySettings = PolicySettings()
    galleries: dict[str, GalleryPolicy] = Field(default_factory=lambda: {"default": GalleryPolicy()})
    notifiers: dict[str, NotifierSettings] = Field(default_factory=lambda: _console_only())
    recipients: list[Recipient] = Field(default_factory=lambda: [Recipient(name="console", notifier="console")])
    rate_limits: RateLimitSettings = RateLimitSettings()
    retry: RetrySettings = RetrySettings()
    review: ReviewSettings = ReviewSettings()
    metrics: MetricsSettings = MetricsSettings()
    gaps: GapSettings = GapSettings()
    console_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="base URL of the web console; messages link to <console_url>/alerts/<alert_id>",
    )

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
        for r in self.recipients:
            unknown = [g for g in r.galleries if g != "*" and g not in self.galleries]
            if unknown:  # a misspelt gallery would silently never be texted about
                raise ValueError(
                    f"recipients.{r.name}: galleries {', '.join(map(repr, unknown))} not under galleries "
                    f"({', '.join(sorted(self.galleries))}): this recipient would never be told about them"
                )
        return self

    def gallery(self, gallery_id: str | None) -> GalleryPolicy:
        return self.galleries.get(gallery_id or "default") or self.galleries["default"]

    def directory_of(self, gallery_id: str | None) -> Path | None:
        """The gallery.sqlite that speaks for ``gallery_id``'s people (its own, else ``directory.path``)."""
        return self.gallery(gallery_id).directory or self.directory.path

    def shown(self) -> dict[str, Any]:
        """The effective config as ``--check-config`` prints it: every URL and DSN redacted (lookout.redact);
        secrets themselves are never in it (only the names of the variables holding them)."""
        doc = self.model_dump(mode="json")
        for notifier in doc["notifiers"].values():
            for key in ("url", "base_url", "endpoint_url"):
                if notifier.get(key):
                    notifier[key] = redact_url(notifier[key], secret_path=notifier["type"] == "webhook")
        if doc["store"].get("dsn"):
            doc["store"]["dsn"] = redact_dsn(doc["store"]["dsn"])
        if doc.get("console_url"):
            doc["console_url"] = redact_url(doc["console_url"])
        return doc

    def problems(self) -> list[str]:
        """Why this config must not run, beyond its fields' own checks (``--check-config`` and start say them)."""
        out = []
        unchecked = sorted(g for g in self.galleries if self.directory_of(g) is None)
        if self.recipients and unchecked and self.policy.require_directory:
            out.append(
                f"directory.path: not set (galleries without a directory: {', '.join(unchecked)}): the relay"
                " could not check a person's jurisdiction against its policy, nor that the gallery still holds"
                " them (withdrawals). Set directory.path to the newest bundle's gallery.sqlite, or say"
                " policy.require_directory: false to alert on the devices' word alone"
            )
        paths = {self.directory_of(g) for g in self.galleries} - {None}
        out += [f"directory: {p} does not exist" for p in sorted(paths, key=str) if p and not p.is_file()]
        if self.policy.file is not None and not self.policy.file.is_file():
            out.append(f"policy.file: {self.policy.file} does not exist")
        return out


def _resolve_paths(cfg: RelayConfig, base: Path) -> RelayConfig:
    def rel(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p)

    updates = {
        "store": cfg.store.model_copy(update={"path": rel(cfg.store.path)}),
        "directory": cfg.directory.model_copy(update={"path": rel(cfg.directory.path)}),
        "policy": cfg.policy.model_copy(update={"file": rel(cfg.policy.file)}),
        "galleries": {k: g.model_copy(update={"directory": rel(g.directory)}) for k, g in cfg.galleries.items()},
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
