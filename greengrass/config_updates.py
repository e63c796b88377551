"""The component's configuration: read it, coerce it, and apply live updates where safe.

Two kinds of keys (see greengrass/recipe.yaml):

- **restart keys** (device id, topics, bundle URL and key, jurisdiction, camera,
  publisher, models, heartbeat): the recipe passes them to the Startup step as
  environment variables, so a deployment that changes one changes the interpolated
  lifecycle and the nucleus restarts the component with the new value;
- **live keys** (:data:`LIVE_KEYS`: threshold, margin, cooldown, crop, log level):
  read over IPC (``GetConfiguration``) at start and applied while running when a
  deployment changes them (``SubscribeToConfigurationUpdate``), without a restart.

Greengrass stores numbers from a cloud deployment as floats (``60`` comes back as
``60.0``) and lifecycle variables arrive as strings, so every value is coerced here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from lookout.errors import ConfigError
from lookout.log import get_logger

log = get_logger(__name__)

LIVE_KEYS = ("threshold", "margin", "cooldownSeconds", "sendCrop", "logLevel")
_LEVELS = ("debug", "info", "warning", "error")


def as_float(value: Any, key: str) -> float:
    try:
        return float(str(value).strip())
    except ValueError:
        raise ConfigError(f"component configuration {key}: {value!r} is not a number") from None


def as_int(value: Any, key: str) -> int:
    number = as_float(value, key)
    if not number.is_integer():
        raise ConfigError(f"component configuration {key}: {value!r} is not a whole number")
    return int(number)


def as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on", "1.0"):
        return True
    if text in ("false", "0", "no", "off", "0.0", ""):
        return False
    raise ConfigError(f"component configuration {key}: {value!r} is not true or false")


@dataclass(frozen=True)
class LiveSettings:
    """The live keys, coerced. ``threshold`` 0 means the gallery bundle's own calibrated threshold."""

    threshold: float = 0.0
    margin: float = 0.05
    cooldownSeconds: float = 60.0
    sendCrop: bool = True
    logLevel: str = "info"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LiveSettings:
        defaults = cls()
        threshold = as_float(config.get("threshold", defaults.threshold), "threshold")
        if not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"component configuration threshold: {threshold} is outside [-1, 1] (0: the bundle's)")
        margin = as_float(config.get("margin", defaults.margin), "margin")
        if not 0.0 <= margin <= 2.0:
            raise ConfigError(f"component configuration margin: {margin} is outside [0, 2]")
        cooldown = as_float(config.get("cooldownSeconds", defaults.cooldownSeconds), "cooldownSeconds")
        if cooldown < 0:
            raise ConfigError(f"component configuration cooldownSeconds: {cooldown} is negative")
        level = str(config.get("logLevel", defaults.logLevel)).strip().lower()
        if level not in _LEVELS:
            raise ConfigError(f"component configuration logLevel: {level!r} is not one of {', '.join(_LEVELS)}")
        return cls(threshold, margin, cooldown, as_bool(config.get("sendCrop", defaults.sendCrop), "sendCrop"), level)

    def changed(self, other: LiveSettings) -> dict[str, Any]:
        return {f.name: getattr(other, f.name) for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)}


def apply_live(runtime: Any, settings: LiveSettings) -> None:
    """Apply the live keys to a running ``lookout.device.runtime.Runtime`` (from the next frame on)."""
    runtime.apply_live(
        threshold=settings.threshold or None,
        min_margin=settings.margin,
        cooldown_s=settings.cooldownSeconds,
        crop=settings.sendCrop,
    )
    logging.getLogger().setLevel(settings.logLevel.upper())


class ConfigurationWatcher:
    """Subscribes to this component's configuration updates over IPC and applies the live keys.

    ``client`` is a connected ``GreengrassCoreIPCClientV2`` (or a stand-in with the same
    ``get_configuration`` / ``subscribe_to_configuration_update`` methods).
    """

    def __init__(
        self,
        client: Any,
        current: LiveSettings,
        apply: Callable[[LiveSettings], None],
        restart_keys: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.current = current
        self.apply = apply
        self.restart_keys = dict(restart_keys or {})
        self._lock = threading.Lock()
        self._operation: Any = None
        self.applied = 0

    def start(self) -> None:
        _, self._operation = self.client.subscribe_to_configuration_update(
            key_path=[], on_stream_event=self._on_event, on_stream_error=self._on_error
        )
        log.info("greengrass.config_watch", live_keys=",".join(LIVE_KEYS))

    def _on_error(self, error: Exception) -> bool:
        log.warning("greengrass.config_watch_error", error=repr(error))
        return False  # keep the stream open

    def _on_event(self, event: Any) -> None:
        try:
            self.refresh()
        except Exception as err:  # a bad value must not stop the device: keep the current settings
            log.error("greengrass.config_rejected", error=str(err), keeping=str(self.current))

    def refresh(self) -> dict[str, Any]:
        """Read the configuration again, apply changed live keys; return what changed."""
        config = self.client.get_configuration(key_path=[]).value or {}
        new = LiveSettings.from_config(config)
        with self._lock:
            changes = self.current.changed(new)
            if changes:
                self.apply(new)
                self.current = new
                self.applied += 1
                log.info("greengrass.config_applied", **{k: str(v) for k, v in changes.items()})
        for key, started_with in self.restart_keys.items():
            if key in config and str(config[key]) != str(started_with):
                log.info(
                    "greengrass.config_needs_restart",
                    key=key,
                    hint="the nucleus restarts the component when a deployment changes this key",
                )
        return changes

    def stop(self) -> None:
        if self._operation is not None:
            with contextlib.suppress(Exception):
                self._operation.close()
