"""Console configuration: one YAML file (``console.yaml``), environment overrides, validated at start.

Overrides: ``LOOKOUT_CONSOLE__<SECTION>__<KEY>=value`` as for the relay and the device. Relative paths are
relative to the config file. No secret is ever in the file: passwords live hashed in the console's own
database (``lookout console adduser``), the broker password in the environment variable the MQTT section names.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from lookout.config_file import load_settings
from lookout.gallery.purpose import Purpose
from lookout.mqtt import MqttSettings
from lookout.sync.records import SourceJurisdiction
from lookout.topics import DEFAULT_PREFIX, TopicPrefix

ENV_PREFIX = "LOOKOUT_CONSOLE__"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenSettings(_Strict):
    host: str = Field("127.0.0.1", description="bind address; loopback unless you put a TLS proxy or TLS here")
    port: int = Field(8080, ge=0, le=65535, description="0: any free port (tests)")


class TlsFiles(_Strict):
    cert_file: Path
    key_file: Path


class GallerySettings(_Strict):
    """One gallery the console shows and changes. Versions are read from ``published`` (ROOT/v/<N>/, as
    ``lookout gallery publish`` writes them); a change makes version N+1 with ``update_gallery`` from ``source``,
    signs it with ``key`` and publishes it there, where devices pull it."""

    published: Path = Field(description="publish folder: manifest.json and v/<version>/")
    source: str | None = Field(None, description="the gallery's source, as for `lookout gallery build SOURCE`")
    people: Path | None = Field(None, description="person details for a folder source (--people)")
    api_config: Path | None = Field(None, description="HTTP API source config (--api-config)")
    jurisdiction: SourceJurisdiction = Field(
        None,
        description="where the source's people are, for records that do not say (--jurisdiction); without it such "
        "records are refused (an unknown jurisdiction is denied)",
    )
    key: Path | None = Field(None, description="Ed25519 private key that signs new versions; unset: read-only")
    public_key: Path | None = Field(
        None, description="checks every version the console loads (required to load one: fail closed)"
    )
    report: Path | None = Field(None, description="failure-to-enrol report of the first build (.json or .csv)")
    photo_roots: list[Path] = Field(
        default_factory=list, description="folders enrolled photos may be shown from (default: the source's folder)"
    )


class TopicSettings(_Strict):
    prefix: TopicPrefix = DEFAULT_PREFIX


class FleetSettings(_Strict):
    enabled: bool = True
    offline_after_s: float = Field(90, gt=0, description="no heartbeat for this long: shown offline")


class UploadSettings(_Strict):
    max_bytes: int = Field(10 * 1024 * 1024, gt=0, description="largest photo upload")
    max_pixels: int = Field(40_000_000, gt=0, description="largest image (width x height), read from its header")


class SearchSettings(_Strict):
    per_user_per_hour: int = Field(
        120, ge=1, description="searches one account may make in any hour: a lookup tool, not a mass-scanning one"
    )


class SessionSettings(_Strict):
    idle_s: float = Field(1800, gt=0, description="a session unused this long ends")
    absolute_s: float = Field(12 * 3600, gt=0, description="no session lives longer")
    secure_cookie: bool | None = Field(None, description="Secure flag; default: on with TLS or off loopback")


class LoginSettings(_Strict):
    max_failures: int = Field(5, ge=1, description="failed logins per account or address within window_s ...")
    window_s: float = Field(300, gt=0)
    lockout_s: float = Field(300, gt=0, description="... lock that account or address this long")


class ModelSettings(_Strict):
    """The face pipeline's models; each gallery is searched with the embedder it was built with (its manifest)."""

    model_dir: Path | None = None
    device: str = "CPU"
    detector: str | None = Field(None, description="default: the model catalogue's default detector")


class ConsoleConfig(_Strict):
    listen: ListenSettings = ListenSettings()
    tls: TlsFiles | None = None
    data_dir: Path = Field(Path("console-data"), description="accounts, sessions, consent ledger (console.sqlite)")
    relay_config: Path | None = Field(None, description="the relay's YAML config: its store holds alerts and audit")
    relay_store: Path | None = Field(None, description="the relay store file when no relay_config is given")
    policy: Path | None = Field(None, description="jurisdiction policy; default: the built-in one (denies US-IL)")
    location: str | None = Field(None, description="jurisdiction the console's users search from")
    purpose: Purpose | None = Field(None, description="purpose searches are made for; default: each gallery's")
    galleries: dict[str, GallerySettings] = Field(default_factory=dict)
    models: ModelSettings = ModelSettings()
    mqtt: MqttSettings = MqttSettings()
    topics: TopicSettings = TopicSettings()
    fleet: FleetSettings = FleetSettings()
    uploads: UploadSettings = UploadSettings()
    search: SearchSettings = SearchSettings()
    sessions: SessionSettings = SessionSettings()
    login: LoginSettings = LoginSettings()

    @property
    def secure_cookies(self) -> bool:
        if self.sessions.secure_cookie is not None:
            return self.sessions.secure_cookie
        return self.tls is not None or self.listen.host not in LOOPBACK

    @property
    def database(self) -> Path:
        return self.data_dir / "console.sqlite"


def _resolve(path: Path | None, base: Path) -> Path | None:
    return None if path is None else (path if path.is_absolute() else base / path)


def _resolve_gallery(g: GallerySettings, base: Path) -> GallerySettings:
    source = g.source
    if source and "://" not in source and not Path(source).is_absolute():
        source = str(base / source)
    roots = [_resolve(r, base) for r in g.photo_roots]
    if not roots and source and "://" not in source:
        src = Path(source)
        roots = [src if src.is_dir() else src.parent]
    return g.model_copy(
        update={
            "published": _resolve(g.published, base),
            "source": source,
            "people": _resolve(g.people, base),
            "api_config": _resolve(g.api_config, base),
            "key": _resolve(g.key, base),
            "public_key": _resolve(g.public_key, base),
            "report": _resolve(g.report, base),
            "photo_roots": roots,
        }
    )


def load_config(path: Path | None, overrides: list[str] | None = None) -> ConsoleConfig:
    """The console config from ``path`` (or defaults), environment and ``--set`` overrides, paths resolved."""
    config, base = load_settings(
        ConsoleConfig, path, env_prefix=ENV_PREFIX, what="console config", overrides=overrides or []
    )
    tls = config.tls
    if tls is not None:
        tls = TlsFiles(cert_file=_resolve(tls.cert_file, base), key_file=_resolve(tls.key_file, base))
    models = config.models.model_copy(update={"model_dir": _resolve(config.models.model_dir, base)})
    return config.model_copy(
        update={
            "tls": tls,
            "data_dir": _resolve(config.data_dir, base),
            "relay_config": _resolve(config.relay_config, base),
            "relay_store": _resolve(config.relay_store, base),
            "policy": _resolve(config.policy, base),
            "models": models,
            "galleries": {name: _resolve_gallery(g, base) for name, g in config.galleries.items()},
        }
    )
