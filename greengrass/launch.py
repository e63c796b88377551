"""What the Greengrass component's Startup step runs: ``python -m lookout.greengrass.launch``.

Builds the device configuration from the component configuration, starts the
device runtime with the right publisher (Greengrass IPC under the nucleus, else
paho MQTT), writes ``--ready-file`` once the models and a gallery are loaded (the
Startup step waits for it, so the nucleus reports RUNNING only for a working
device), applies live configuration updates, and stops cleanly on SIGTERM.

Inputs (environment, set by the recipe's lifecycle):

- ``LOOKOUT_WORK_DIR`` ({work:path}): device.yaml, the public key, the bundle store,
  the outbox; ``LOOKOUT_MODEL_DIR``: the unpacked models artifact;
  ``LOOKOUT_CODE_DIR``: the unpacked code artifact;
- restart keys as ``LOOKOUT_*`` variables (see ``greengrass/recipe.yaml``);
- live keys from the component configuration: over IPC under Greengrass, otherwise
  from ``--config-file`` / ``LOOKOUT_COMPONENT_CONFIG`` (JSON), otherwise the defaults
  shipped in the artifact (``greengrass/default-configuration.json``);
- ``LOOKOUT_DEVICE__SECTION__KEY`` variables override any device setting, as for
  ``lookout run`` (e.g. ``LOOKOUT_DEVICE__SOURCE__LOOP=true``).
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lookout.device.config import ENV_PREFIX, DeviceConfig, load_config
from lookout.device.runtime import Runtime
from lookout.errors import ConfigError, LookoutError
from lookout.greengrass.config_updates import ConfigurationWatcher, LiveSettings, apply_live, as_float, as_int
from lookout.greengrass.ipc_publisher import (
    GreengrassIpcPublisher,
    choose_publisher_kind,
    ipc_client_factory,
    report_state,
)
from lookout.log import TextFormatter, get_logger


def _write_pid(path: str | None) -> None:
    if path:
        Path(path).write_text(f"{os.getpid()}\n")


def _setup_logging(log_file: str | None, level: str) -> None:

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.handlers.RotatingFileHandler(log_file, maxBytes=5_000_000, backupCount=3)]
    for handler in handlers:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level.upper())


def read_component_config(kind: str, config_file: str | None, environ: Mapping[str, str]) -> dict:
    """The component configuration: IPC under Greengrass, else a JSON file, else the shipped defaults."""
    if kind == "greengrass":
        client = ipc_client_factory()
        try:
            return dict(client.get_configuration(key_path=[]).value or {})
        finally:
            client.close()
    candidates = [config_file, environ.get("LOOKOUT_COMPONENT_CONFIG")]
    code_dir = environ.get("LOOKOUT_CODE_DIR")
    if code_dir:
        candidates.append(str(Path(code_dir) / "greengrass" / "default-configuration.json"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return json.loads(Path(candidate).read_text(encoding="utf-8"))
    return {}


def device_config_doc(environ: Mapping[str, str], live: Any, work: Path) -> tuple[dict, str | None]:
    """The device configuration (``lookout run`` format) and the bundle public key PEM to write."""

    def env(name: str, default: str = "") -> str:
        return (environ.get(f"LOOKOUT_{name}") or default).strip()

    device_id = env("DEVICE_ID") or env("THING_NAME") or environ.get("AWS_IOT_THING_NAME", "").strip()
    if not device_id:
        raise ConfigError(
            "no device id: set the component configuration deviceId (empty means the thing name, "
            "which the nucleus provides)"
        )
    thing = env("THING_NAME") or environ.get("AWS_IOT_THING_NAME", "")
    if thing and device_id != thing:
        get_logger(__name__).warning(
            "greengrass.device_id_not_thing",
            device_id=device_id,
            thing=thing,
            hint="the default accessControl only allows topics under the thing name: widen it too",
        )
    key_pem = env("BUNDLE_PUBLIC_KEY").replace("\\n", "\n") or None
    gallery: dict[str, Any] = {"store_dir": str(work / "bundles")}
    if key_pem:
        gallery["public_key"] = str(work / "bundle-signing.pub.pem")
    if env("GALLERY_ID"):
        gallery["gallery_id"] = env("GALLERY_ID")
    bundle_url = env("BUNDLE_URL")
    if bundle_url:
        gallery["pull"] = {
            "url": bundle_url,
            "interval_s": as_float(env("BUNDLE_POLL_SECONDS", "300"), "bundlePollSeconds"),
        }
    doc: dict[str, Any] = {
        "device_id": device_id,
        "source": {"url": env("SOURCE", "0")},
        "models": {
            "device": env("INFERENCE_DEVICE", "AUTO"),
            "detector": env("DETECTOR", "blazeface-full"),
            "embedder": env("EMBEDDER", "dlib-resnet"),
        },
        "recognition": {"threshold": live.threshold or None, "min_margin": live.margin},
        "gallery": gallery,
        "events": {"cooldown_s": live.cooldownSeconds, "crop": live.sendCrop},
        "mqtt": {
            "host": env("MQTT_HOST", "127.0.0.1"),
            "port": as_int(env("MQTT_PORT", "1883"), "mqttPort"),
            "client_id": device_id,
            "topic_prefix": env("TOPIC_PREFIX", "dt/lookout"),
        },
        "outbox": {"path": str(work / "outbox.sqlite")},
        "status": {"heartbeat_s": as_float(env("HEARTBEAT_SECONDS", "60"), "heartbeatSeconds")},
    }
    if env("MODEL_DIR"):
        doc["models"]["model_dir"] = env("MODEL_DIR")
    if env("DEVICE_NAME"):
        doc["device_name"] = env("DEVICE_NAME")
    if env("JURISDICTION"):
        doc["location"] = {"jurisdiction": env("JURISDICTION")}
    return doc, key_pem


def check_location(cfg: DeviceConfig) -> None:
    """Recognition needs the device's declared location: said in the component's own terms, before anything starts."""
    if cfg.recognition.enabled and cfg.location.jurisdiction is None:
        raise ConfigError(
            "the component configuration jurisdiction is empty: face recognition needs the device's declared "
            "location (an unknown jurisdiction is denied: it could be Illinois). Deploy the component with the "
            'jurisdiction where this camera is, e.g. {"jurisdiction": "US-CA"}'
        )


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m lookout.greengrass.launch",
        description="Run the Lookout device as a Greengrass component.",
    )
    parser.add_argument("--ready-file", help="written once the device is ready (the Startup step waits for it)")
    parser.add_argument("--pid-file", help="this process's id, for the Shutdown step")
    parser.add_argument("--log-file", help="rotating log file (default: stderr)")
    parser.add_argument("--config-file", help="component configuration as JSON, when not under Greengrass")
    args = parser.parse_args(argv)
    _write_pid(args.pid_file)  # first: the Startup step watches this process
    _setup_logging(args.log_file, "info")

    log = get_logger("lookout.greengrass")
    environ = dict(os.environ)
    kind = "mqtt"
    watcher = None
    try:
        kind = choose_publisher_kind(environ.get("LOOKOUT_PUBLISHER", "auto"), environ)
        work = Path(environ.get("LOOKOUT_WORK_DIR") or ".").resolve()
        work.mkdir(parents=True, exist_ok=True)
        component = read_component_config(kind, args.config_file, environ)
        live = LiveSettings.from_config(component)
        logging.getLogger().setLevel(live.logLevel.upper())
        doc, key_pem = device_config_doc(environ, live, work)
        if key_pem:
            _write_atomic(work / "bundle-signing.pub.pem", key_pem.rstrip() + "\n")
        config_path = work / "device.yaml"
        _write_atomic(
            config_path,
            "# written by the Greengrass component at each start; "
            "edit the component configuration instead\n" + yaml.safe_dump(doc, sort_keys=False),
        )
        overrides = {k: v for k, v in environ.items() if k.upper().startswith(ENV_PREFIX)}
        cfg = load_config(config_path, environ=overrides)
        check_location(cfg)
        log.info(
            "greengrass.starting",
            device_id=cfg.device_id,
            publisher=kind,
            config=str(config_path),
            bundle_url=cfg.gallery.pull.url if cfg.gallery.pull else "",
            models=str(cfg.models.model_dir),
        )

        publisher = GreengrassIpcPublisher() if kind == "greengrass" else None
        runtime = _component_runtime(cfg, publisher, args.ready_file, kind)
        apply_live(runtime, live)
        if kind == "greengrass":
            watcher = ConfigurationWatcher(ipc_client_factory(), live, lambda s: apply_live(runtime, s))
            watcher.start()
        code = runtime.run()
        log.info("greengrass.stopped", code=code)
        return code
    except LookoutError as err:
        log.error("greengrass.failed", error=str(err))
        print(f"lookout: {err}", file=sys.stderr, flush=True)
        if kind == "greengrass":
            report_state("ERRORED")
        return 2
    except Exception as err:  # anything else: say so, and let the nucleus know
        log.error("greengrass.crashed", error=repr(err))
        if kind == "greengrass":
            report_state("ERRORED")
        raise
    finally:
        if watcher is not None:
            watcher.stop()
        if args.ready_file:
            Path(args.ready_file).unlink(missing_ok=True)


def _component_runtime(cfg, publisher, ready_file: str | None, kind: str):
    """The device runtime, writing the ready file once models are loaded and a gallery is in use."""

    log = get_logger("lookout.greengrass")

    def announce_ready(runtime: Runtime) -> None:
        info = {
            "pid": os.getpid(),
            "device_id": runtime.cfg.device_id,
            "publisher": kind,
            "bundle_version": runtime.metrics.bundle_version,
            "recognition": runtime.recognition,
        }
        if ready_file:
            _write_atomic(Path(ready_file), json.dumps(info) + "\n")
        log.info("greengrass.ready", **{k: str(v) for k, v in info.items()})

    return Runtime(cfg, publisher=publisher, on_ready=announce_ready)


if __name__ == "__main__":
    sys.exit(main())
