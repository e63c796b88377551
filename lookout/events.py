"""Messages the device publishes: match events (the contract with every subscriber), status, heartbeat.

The match event is published as JSON on ``dt/lookout/<device_id>/match`` (see
``lookout.topics``) with QoS 1. Its published contract is ``schemas/match-event.v1.json``;
:class:`MatchEvent` accepts exactly what that schema accepts (a test holds them together).

Parsing is strict: no type coercion ("0.9" is not a number), no unknown fields, times
in UTC as RFC 3339 with a ``Z`` (or ``+00:00``) suffix.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from lookout.errors import InputError

SCHEMA_VERSION: Final = "1"
MAX_CROP_BYTES = 32 * 1024  # decoded JPEG bytes
MAX_CROP_B64 = 4 * ((MAX_CROP_BYTES + 2) // 3)
MAX_PAYLOAD_BYTES = 64 * 1024
TEXT_MAX_CHARS = 128  # the schema's "text": person_id, gallery_id, versions (lookout.identifiers holds ids to it)
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
UTC_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)$"
CROP_PATTERN = r"^/9j/[A-Za-z0-9+/]*={0,2}$"  # base64 of a JPEG: starts FF D8 FF
DIGEST_PATTERN = r"^(sha256:)?[0-9a-f]{64}$"

SEQ_STREAM_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_SEQ = 2**53 - 1  # exact in every JSON implementation
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

_UTC_TIME = re.compile(UTC_TIME_PATTERN)
_UUID = re.compile(UUID_PATTERN)


# Times an event may carry. Near datetime's year-9999 edge a timestamp rounds into year 10000 and every
# formatter of it raises (attack A23: one event stopped the deliveries claimed with it and the review queue).
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=timezone.utc)
MAX_CLOCK_AHEAD = timedelta(days=1)  # a sighting this far in the reader's future is a broken clock or a forgery
MAX_EVENT_TTL = timedelta(days=30)  # expires_at - seen_at (devices use minutes)


def _utc_text(value: object) -> object:
    if isinstance(value, datetime):
        if value.utcoffset() != timedelta(0):
            raise ValueError("must be in UTC")
        if not EARLIEST_TIME <= value < LATEST_TIME:
            raise ValueError(f"{value:%Y-%m-%d} is outside {EARLIEST_TIME:%Y-%m-%d} .. {LATEST_TIME:%Y-%m-%d}")
        return value
    if not isinstance(value, str) or not _UTC_TIME.match(value):
        raise ValueError("must be an RFC 3339 UTC time such as 2025-01-31T12:00:00.123Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"not a valid time: {err}") from None
    if not EARLIEST_TIME <= parsed < LATEST_TIME:
        raise ValueError(f"{value} is outside {EARLIEST_TIME:%Y-%m-%d} .. {LATEST_TIME:%Y-%m-%d}")
    return parsed


def _uuid_text(value: object) -> object:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or not _UUID.match(value):
        raise ValueError("must be a UUID in the 8-4-4-4-12 hex form")
    return uuid.UUID(value)


def _json_int(value: object) -> object:
    """JSON Schema's "integer" includes 7.0; accept it as 7 (but not 7.5, "7" or true)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Count = Annotated[int, BeforeValidator(_json_int)]
EventId = Annotated[uuid.UUID, BeforeValidator(_uuid_text)]
UtcTime = Annotated[datetime, BeforeValidator(_utc_text)]
Text = Annotated[str, Field(min_length=1, max_length=TEXT_MAX_CHARS)]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_utc(ts: float | None, pattern: str | None = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """A stored timestamp for people to read; one a store should never hold (out of datetime's range, NaN)
    is shown as such instead of failing the page or the message that shows it (attack A23). ``pattern`` None:
    RFC 3339 (``2025-01-31T12:00:00.123Z``)."""
    if ts is None:
        return "-"
    try:
        when = datetime.fromtimestamp(ts, timezone.utc)
        return when.isoformat().replace("+00:00", "Z") if pattern is None else when.strftime(pattern)
    except (OverflowError, OSError, ValueError):
        return f"(time out of range: {ts!r})"


class ModelRef(BaseModel):
    """The embedding model that produced the match."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: Text
    digest: str = Field(pattern=DIGEST_PATTERN, description="SHA-256 of the model files")


class Location(BaseModel):
    """Where the device is (as configured on it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str | None = Field(None, min_length=1, max_length=200)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class Sequence(BaseModel):
    """The device's durable event counter: ``n`` counts up from 1 within ``stream`` (one outbox's life),
    so a subscriber can tell lost events (gaps) from duplicates, reordering and restarts."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    stream: str = Field(pattern=SEQ_STREAM_PATTERN)
    n: Count = Field(ge=1, le=MAX_SEQ)


class MatchEvent(BaseModel):
    """One decision by a device that a tracked face is an enrolled person."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    schema_version: Literal["1"] = SCHEMA_VERSION
    event_id: EventId
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    seen_at: UtcTime
    expires_at: UtcTime
    person_id: Text
    gallery_id: Text | None = None
    score: float = Field(ge=-1.0, le=1.0)
    margin: float = Field(ge=0.0, le=2.0)
    track_length: Count = Field(ge=1, le=1_000_000)
    model: ModelRef
    bundle_version: Text
    policy_version: Text
    box: tuple[
        Annotated[Count, Field(ge=0)],
        Annotated[Count, Field(ge=0)],
        Annotated[Count, Field(ge=0)],
        Annotated[Count, Field(ge=0)],
    ]
    crop_jpeg_b64: str | None = Field(None, max_length=MAX_CROP_B64, pattern=CROP_PATTERN)
    device_name: str | None = Field(None, min_length=1, max_length=200)
    location: Location | None = None

    @model_validator(mode="after")
    def _times_make_sense(self) -> MatchEvent:
        """A sighting cannot be from (far) in the future, nor expire before it happened or years after."""
        if self.seen_at > utc_now() + MAX_CLOCK_AHEAD:
            raise ValueError(f"seen_at {self.seen_at:%Y-%m-%dT%H:%M:%SZ} is more than a day ahead of this clock")
        if not self.seen_at <= self.expires_at <= self.seen_at + MAX_EVENT_TTL:
            raise ValueError("expires_at must be after seen_at and within 30 days of it")
        return self

    seq: Sequence | None = Field(None, description="per-device sequence number, set by the device's outbox")

    @classmethod
    def create(
        cls, *, ttl: timedelta = timedelta(minutes=5), crop_jpeg: bytes | None = None, **fields: object
    ) -> MatchEvent:
        """A new event with a fresh id, ``seen_at`` now (unless given) and ``expires_at`` after ``ttl``."""
        given = fields.pop("seen_at", None)
        seen_at = given if isinstance(given, datetime) else utc_now()
        fields.setdefault("event_id", uuid.uuid4())
        if crop_jpeg is not None:
            fields["crop_jpeg_b64"] = base64.b64encode(crop_jpeg).decode("ascii")
        return cls.model_validate(
            {**fields, "seen_at": seen_at, "expires_at": seen_at + ttl},
            strict=False,
        )

    def to_json(self) -> bytes:
        """The wire form: compact JSON, absent optional fields left out."""
        return self.model_dump_json(exclude_none=True).encode("utf-8")

    def is_stale(self, now: datetime | None = None) -> bool:
        """True once ``expires_at`` has passed: the sighting is old news (e.g. delayed by an outage)."""
        return (now or utc_now()) >= self.expires_at

    def crop_jpeg(self) -> bytes | None:
        return base64.b64decode(self.crop_jpeg_b64) if self.crop_jpeg_b64 else None


class DeviceStatus(BaseModel):
    """Retained ``.../status`` message: ``online`` on connect, ``offline`` as last will or clean stop."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    schema_version: Literal["1"] = SCHEMA_VERSION
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    state: Literal["online", "offline"]
    at: UtcTime
    version: str | None = Field(None, max_length=64, description="lookout version on the device")
    bundle_version: str | None = Field(None, max_length=128)


class Heartbeat(BaseModel):
    """Periodic ``.../heartbeat``: device health for dashboards and ``lookout events tail``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    schema_version: Literal["1"] = SCHEMA_VERSION
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    at: UtcTime
    fps: float = Field(ge=0)
    stage_ms: dict[str, float] = Field(default_factory=dict, description="mean ms per pipeline stage")
    queue_depth: int = Field(0, ge=0, description="events waiting in the outbox")
    bundle_version: str | None = Field(None, max_length=128)
    uptime_s: float | None = Field(None, ge=0)


def _reason(err: ValidationError) -> str:
    parts = []
    for item in err.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "(message)"
        parts.append(f"{where}: {item['msg']}")
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _short(err: Exception, limit: int = 200) -> str:
    """An exception's message cut to ``limit`` characters: enough to say why, never the payload."""
    text = str(err)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_json(payload: bytes | bytearray | str, source: str) -> Any:
    """``json.loads`` for input from the network, a file or another program: every way it can fail (not UTF-8,
    not JSON, a number of 5,000 digits, ``[[[[...`` 60,000 deep) is one InputError naming ``source``. The one
    guard for every reader of untrusted JSON (attack findings A11, A12: each reader missed one of these)."""
    try:
        return json.loads(payload)
    except RecursionError:  # "[[[[..." deep: must not take a network thread down
        raise InputError(source, "JSON nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, and a number of 5,000 digits (int limit)
        raise InputError(source, f"not JSON: {_short(err)}") from None


def read_json_object(payload: bytes | bytearray | str, source: str) -> dict[str, Any]:
    """:func:`read_json` for a JSON object (anything else: InputError naming ``source``)."""
    doc = read_json(payload, source)
    if not isinstance(doc, dict):
        raise InputError(source, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def parse_match_event(payload: bytes, source: str = "match event") -> MatchEvent:
    """Parse and validate a match event, raising InputError naming ``source`` and the reason.

    Valid events are parsed once (pydantic's compiled JSON validator); only a payload it refuses is
    read again with ``json`` to say why in the plainest terms (not JSON, not an object, another version).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InputError(source, f"payload is {len(payload)} bytes, more than the {MAX_PAYLOAD_BYTES} allowed")
    try:
        return MatchEvent.model_validate_json(payload)
    except ValidationError as err:
        problem = err
    doc = read_json_object(payload, source)
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(source, f"unsupported schema_version {version!r} (this relay reads {SCHEMA_VERSION!r})")
    raise InputError(source, _reason(problem))
