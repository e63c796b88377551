"""Device configuration: one YAML or TOML file, environment overrides, CLI flags, validated at start.

Precedence, lowest first: defaults < the file < ``LOOKOUT_DEVICE__<SECTION>__<KEY>=value``
environment variables < ``--set section.key=value`` flags (and the shortcut flags of
``lookout run``). Environment and flag values are read as YAML scalars, so ``8080`` is a
number, ``false`` a boolean and ``null`` unset. Example::

    LOOKOUT_DEVICE__MQTT__HOST=broker.local lookout run --config device.yaml --set recognition.k=2

Relative paths in the file are taken relative to the file's folder. Secrets are never
in the file: ``mqtt.password_env`` names the variable that holds the broker password.
See docs/device.md for every key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lookout.config_file import load_settings
from lookout.device.homeassistant import HomeAssistantConfig
from lookout.errors import InputError
from lookout.face.image_io import MAX_PIXELS
from lookout.face.quality import QualityConfig
from lookout.gallery.format import gallery_id_problem
from lookout.gallery.jurisdiction import normalise_jurisdiction
from lookout.gallery.purpose import DEFAULT_PURPOSE, PURPOSES, Purpose
from lookout.model_store.catalog import DEFAULT_DETECTOR, DEFAULT_EMBEDDER
from lookout.mqtt import MqttSettings
from lookout.topics import DEFAULT_PREFIX, DeviceId, TopicPrefix

ENV_PREFIX = "LOOKOUT_DEVICE__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class LocationConfig(_Section):
    name: str | None = Field(None, min_length=1, max_length=200, description="human-readable place, sent in events")
    jurisdiction: str | None = Field(
        None,
        description="ISO 3166-2 code (e.g. GB, US-CA) checked against the policy; required for recognition "
        "(none: recognition is refused, an unknown jurisdiction is denied)",
    )
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)

    @field_validator("jurisdiction")
    @classmethod
    def _jurisdiction(cls, value: str | None) -> str | None:
        """Brought to its ISO code (``Illinois`` -> ``US-IL``) so the policy sees what the operator meant;
        a value that cannot be read is a configuration error (fail closed: the device does not start)."""
        if value is None or not value.strip():
            return None
        try:
            return normalise_jurisdiction(value)
        except InputError as err:
            raise ValueError(err.reason) from None


class BackoffConfig(_Section):
    initial_s: float = Field(1.0, gt=0)
    max_s: float = Field(30.0, gt=0)


class SourceConfig(_Section):
    url: str = Field(
        ..., min_length=1, description="video file, image folder, USB camera index (0), rtsp:// or http(s):// URL"
    )
    kind: Literal["auto", "file", "folder", "usb", "stream"] = "auto"
    max_pixels: int = Field(
        MAX_PIXELS, gt=0, description="folder sources: skip images larger than this (read from the header)"
    )
    realtime: bool | None = Field(
        None,
        description="files/folders: play at their own rate and drop frames when behind (default true); "
        "false processes every frame as fast as possible (tests, benchmarks)",
    )
    fps: float | None = Field(None, gt=0, description="frame rate of a folder (default 2) or override a file's")
    loop: bool = Field(False, description="files/folders: start again at the end")
    reopen: BackoffConfig = BackoffConfig()
    give_up_after_s: float = Field(
        0, ge=0, description="stop when a camera/stream stays unavailable this long; 0 never"
    )
    width: int | None = Field(None, gt=0, description="USB cameras: ask for this frame width")
    height: int | None = Field(None, gt=0)


class ModelsConfig(_Section):
    model_dir: Path | None = Field(None, description="model cache (default $LOOKOUT_MODEL_DIR or the user cache dir)")
    device: str = Field("AUTO", description="OpenVINO device: AUTO, CPU, GPU, NPU")
    detector: str = DEFAULT_DETECTOR
    embedder: str = DEFAULT_EMBEDDER
    detection_threshold: float | None = Field(None, gt=0, lt=1, description="detector score; default from its manifest")
    tile: int = Field(0, ge=0, description="also detect in square tiles of this many pixels (small faces); 0 off")
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto",
        description="the embedder's number format: auto = what `lookout models precision` measured best on this "
        "device (FP32 until measured); fp32, bf16 or int8 to force one",
    )


class QualitySettings(_Section):
    """The quality gates (lookout.face.quality.QualityConfig) as a device sets them; only the
    yaw gate differs from a photo's: a camera sees the same person again, turned less."""

    min_size_px: float = Field(QualityConfig.min_size_px, ge=0)
    min_blur: float = Field(QualityConfig.min_blur, ge=0)
    max_abs_yaw: float = Field(0.6, gt=0)
    pitch_min: float = QualityConfig.pitch_range[0]
    pitch_max: float = QualityConfig.pitch_range[1]

    def gates(self) -> QualityConfig:
        return QualityConfig(
            min_size_px=self.min_size_px,
            min_blur=self.min_blur,
            max_abs_yaw=self.max_abs_yaw,
            pitch_range=(self.pitch_min, self.pitch_max),
        )


class TrackingConfig(_Section):
    iou_threshold: float = Field(
        0.3, gt=0, le=1, description="a detection continues a track when boxes overlap this much"
    )
    max_distance: float = Field(0.6, ge=0, description="...or when centres are within this many face widths")
    max_missed: int = Field(8, ge=0, description="frames a track survives without a detection")


class RecognitionConfig(_Section):
    enabled: bool = Field(True, description="false: detection and tracking only (counting), nothing recognised")
    embed: Literal["tracked", "all"] = Field(
        "tracked", description="tracked: embed a face only while its track needs it; all: every face, every frame"
    )
    k: int = Field(3, ge=1, description="votes needed ...")
    n: int = Field(5, ge=1, description="... among the last n embedded frames of a track")
    threshold: float | None = Field(None, ge=-1, le=1, description="cosine needed; default: the gallery's threshold")
    accept_fpir: bool = Field(
        False,
        description="use recognition.threshold even when the FPIR it predicts at the gallery's size is more than "
        "5 times the gallery's target (otherwise refused at start, ignored at a swap, refused as a live update)",
    )
    accept_fnir: bool = Field(
        False,
        description="use recognition.threshold even when it is predicted to miss half the gallery's people or more",
    )
    min_margin: float = Field(0.05, ge=0, le=2, description="best person's score over the second-best person's")
    embed_every: int = Field(1, ge=1, description="frames between embeddings of an undecided track")
    slow_embed_every: int = Field(5, ge=1, description="... once it has had 3n embeddings without a decision")
    max_batch: int = Field(
        4,
        ge=1,
        le=64,
        description="faces per embedding request; OpenVINO keeps working memory for every batch size it has run "
        "(dlib-resnet: batches 1-8 cost 12 MB more than 1-4), and a device rarely embeds more than 4 at once",
    )
    max_faces: int = Field(16, ge=1, le=64, description="faces embedded per frame at most (closest first)")

    @model_validator(mode="after")
    def _k_of_n(self) -> RecognitionConfig:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) cannot exceed n ({self.n})")
        return self


class PullConfig(_Section):
    url: str = Field(..., description="where the bundle is published (https:// or s3://)")
    interval_s: float = Field(300, gt=0)


class GalleryConfig(_Section):
    bundle_dir: Path | None = Field(None, description="a fixed bundle folder")
    store_dir: Path | None = Field(None, description="a bundle store (lookout sync), its current bundle is used")
    public_key: Path | None = Field(None, description="Ed25519 public key (PEM) that signs bundles")
    policy: Path | None = Field(None, description="jurisdiction policy file; unset: the built-in default")
    gallery_id: str | None = Field(
        None,
        description="the gallery this device is for (`gallery build` prints it): bundles of any other are refused; "
        "unset: a store keeps to the gallery of the bundle it holds",
    )
    pull: PullConfig | None = None

    @field_validator("gallery_id")
    @classmethod
    def _gallery_id(cls, value: str | None) -> str | None:
        problem = gallery_id_problem(value) if value is not None else None
        if problem:
            raise ValueError(f"{value!r}: {problem}")
        return value

    @model_validator(mode="after")
    def _where(self) -> GalleryConfig:
        if self.bundle_dir is not None and self.store_dir is not None:
            raise ValueError("set bundle_dir or store_dir, not both")
        if self.pull is not None and self.store_dir is None:
            raise ValueError("pull needs store_dir (where pulled bundles are kept)")
        return self


class EventsConfig(_Section):
    ttl_s: float = Field(300, gt=0, description="an event not delivered within this is marked stale")
    crop: bool = Field(True, description="attach a small JPEG of the face (policy may still forbid it)")
    crop_px: int = Field(112, ge=32, le=512, description="longest side of the crop")
    crop_max_bytes: int = Field(16384, ge=1024, le=32768)
    cooldown_s: float = Field(60, ge=0, description="per person: at most one event per this many seconds")


class DeviceMqttConfig(MqttSettings):
    topic_prefix: TopicPrefix = DEFAULT_PREFIX
    qos: Literal[1] = 1


class OutboxConfig(_Section):
    path: Path = Field(Path("outbox.sqlite"), description="SQLite file (WAL) holding events until the broker has them")
    max_events: int = Field(100_000, ge=10, description="oldest events are dropped (logged) beyond this")
    resend_s: float = Field(10, gt=0, description="an unacknowledged send is retried after this many seconds")
    inflight: int = Field(20, ge=1, le=1000, description="events sent and not yet acknowledged at most")
    flush_at_end_s: float = Field(
        15, ge=0, description="when a file source ends: wait this long for undelivered events"
    )


class StatusConfig(_Section):
    heartbeat_s: float = Field(10, gt=0)
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus text on 127.0.0.1:port; unset off")
    metrics_host: str = "127.0.0.1"


class DebugConfig(_Section):
    save_frames_dir: Path | None = Field(
        None, description="write every processed frame here as JPEG (announced at start)"
    )


class DeviceConfig(_Section):
    device_id: DeviceId
    device_name: str | None = Field(None, min_length=1, max_length=200)
    location: LocationConfig = LocationConfig()
    purpose: Purpose = Field(
        DEFAULT_PURPOSE, description=f"purpose checked against the policy: one of {', '.join(PURPOSES)}"
    )
    source: SourceConfig
    models: ModelsConfig = ModelsConfig()
    quality: QualitySettings = QualitySettings()
    tracking: TrackingConfig = TrackingConfig()
    recognition: RecognitionConfig = RecognitionConfig()
    gallery: GalleryConfig = GalleryConfig()
    events: EventsConfig = EventsConfig()
    mqtt: DeviceMqttConfig = DeviceMqttConfig()
    outbox: OutboxConfig = OutboxConfig()
    status: StatusConfig = StatusConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    debug: DebugConfig = DebugConfig()
    clock: Literal["wall", "video"] = Field(
        "wall", description="video: time advances with the video's timestamps (replaying recordings, tests)"
    )

    @property
    def bundle_purpose(self) -> str | None:
        """The purpose a bundle must have been built for: ``purpose`` when device.yaml sets it, else None (any)."""
        return self.purpose if "purpose" in self.model_fields_set else None

    @model_validator(mode="after")
    def _cross(self) -> DeviceConfig:
        if self.recognition.enabled and self.gallery.bundle_dir is None and self.gallery.store_dir is None:
            raise ValueError("gallery: set bundle_dir or store_dir (or recognition.enabled: false for detection only)")
        if self.recognition.enabled and self.gallery.public_key is None:
            raise ValueError("gallery.public_key: needed to check the bundle's signature")
        return self


# -- loading ---------------------------------------------------------------------------


def _resolve_paths(cfg: DeviceConfig, base: Path) -> DeviceConfig:
    def rel(p: Path | None) -> Path | None:
        if p is None:
            return None
        p = p.expanduser()
        return p if p.is_absolute() else base / p

    g, m = cfg.gallery, cfg.models
    src = cfg.source
    url = src.url
    if src.kind in ("auto", "file", "folder") and "://" not in url and not url.isdigit():
        url = str(rel(Path(url)))
    tls = cfg.mqtt.tls
    if tls is not None:
        tls = tls.model_copy(update={k: rel(getattr(tls, k)) for k in ("ca_file", "cert_file", "key_file")})
    return cfg.model_copy(
        update={
            "source": src.model_copy(update={"url": url}),
            "models": m.model_copy(update={"model_dir": rel(m.model_dir)}),
            "gallery": g.model_copy(
                update={k: rel(getattr(g, k)) for k in ("bundle_dir", "store_dir", "public_key", "policy")}
            ),
            "outbox": cfg.outbox.model_copy(update={"path": rel(cfg.outbox.path)}),
            "debug": cfg.debug.model_copy(update={"save_frames_dir": rel(cfg.debug.save_frames_dir)}),
            "mqtt": cfg.mqtt.model_copy(update={"tls": tls}),
        }
    )


def load_config(
    path: Path | str | None, *, environ: dict[str, str] | None = None, overrides: list[str] | None = None
) -> DeviceConfig:
    """Read the file, apply environment and flag overrides, validate. Raises ConfigError listing every problem."""
    cfg, base = load_settings(
        DeviceConfig, path, env_prefix=ENV_PREFIX, what="device config", environ=environ, overrides=overrides or []
    )
    return _resolve_paths(cfg, base)


def example_config() -> str:
    """A commented starting point (``lookout run --example-config``)."""
    return EXAMPLE


EXAMPLE = """\
# Lookout device configuration: `lookout run --config device.yaml`.
# YAML (TOML with the same keys works too). Every key is in docs/device.md; any key can be
# overridden with LOOKOUT_DEVICE__<SECTION>__<KEY>=value or --set section.key=value.
# Relative paths are relative to this file. Check it with: lookout run --config device.yaml --check-config

# The topic level for this device (dt/lookout/<device_id>/match): letters, digits, '.', '_', '-'.
device_id: cam-lobby-01
device_name: Lobby camera            # sent in events, shown in alerts

location:
  name: Head office lobby            # sent in events
  # REQUIRED for recognition: where this camera is, as an ISO 3166-2 code, checked against the
  # jurisdiction policy. With none, recognition is refused (an unknown jurisdiction is denied: the
  # device could be in Illinois); recognition.enabled: false runs detection only. Recognition does
  # not start where the policy denies it (the built-in policy denies US-IL, Illinois' BIPA).
  # "Illinois" or "US IL" is read as US-IL; a value that cannot be read makes this file invalid.
  jurisdiction: GB

source:
  # A video file, a folder of images, a USB camera index (0) or an rtsp:// / http(s):// stream.
  url: rtsp://192.168.1.20:554/stream1
  # reopen: {initial_s: 1, max_s: 30}   # camera reconnect backoff, doubling, with jitter

gallery:
  # Where verified bundles are kept (`lookout sync pull --into` the same folder), or
  # bundle_dir: for one fixed bundle.
  store_dir: /var/lib/lookout/bundles
  public_key: /etc/lookout/bundle-signing.pub.pem   # Ed25519 key the gallery builder signs with
  # policy: /etc/lookout/policy.yaml   # unset: the built-in policy (deny US-IL and people with no jurisdiction)
  # gallery_id: g-0123456789abcdef    # the gallery this device is for (`gallery build` prints it); others refused
  # pull: {url: https://example.com/galleries/lobby, interval_s: 300}   # keep store_dir current (use https)

# models: {device: AUTO}              # OpenVINO device: AUTO, CPU, GPU, NPU (`lookout run --device CPU`)

# recognition: {k: 3, n: 5, min_margin: 0.05}   # votes among a track's last n frames; threshold: the gallery's

mqtt:
  host: 127.0.0.1
  port: 1883
  client_id: cam-lobby-01            # default lookout-<device_id>; one broker session per device
  # password_env: LOOKOUT_MQTT_PASSWORD   # the NAME of the variable holding the password, never the password
  # tls: {ca_file: AmazonRootCA1.pem, cert_file: device.pem.crt, key_file: private.pem.key}

outbox:
  path: /var/lib/lookout/outbox.sqlite   # events wait here (on disk) until the broker has them

events:
  cooldown_s: 60                     # at most one event per person per minute from this device
  # crop: true                       # a small JPEG of the face in each event (the policy may forbid it)

status:
  heartbeat_s: 10
  # metrics_port: 9108               # Prometheus text on 127.0.0.1
"""
