"""`lookout run`, `lookout events tail`, `lookout video make` (`lookout bench device` is in lookout.demo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lookout.device.check import check_config
from lookout.device.config import DeviceConfig, example_config, load_config
from lookout.device.runtime import Runtime
from lookout.device.tail import tail
from lookout.device.videomaker import make_hold_video, make_scene_video
from lookout.errors import ConfigError, LookoutError
from lookout.mqtt import MqttSettings
from lookout.topics import DEFAULT_PREFIX

DEFAULT_FACES_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces-dev"


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="run the device: camera frames in, match events out over MQTT")
    run.add_argument("--config", "-c", type=Path, help="device config file (YAML or TOML)")
    run.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config and what it points at (models, key, bundle, policy, source), then exit",
    )
    run.add_argument("--example-config", action="store_true", help="print a commented example config and exit")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set recognition.k=2 (repeatable)",
    )
    run.add_argument("--source", help="shortcut for --set source.url=...")
    run.add_argument("--device-id", help="shortcut for --set device_id=...")
    run.add_argument("--device", help="OpenVINO device (AUTO, CPU, GPU, NPU): shortcut for --set models.device=...")
    run.add_argument("--mqtt-host", help="shortcut for --set mqtt.host=...")
    run.add_argument("--mqtt-port", help="shortcut for --set mqtt.port=...")
    run.set_defaults(func=_run)

    events = commands.add_parser("events", help="subscribe to devices' events")
    sub = events.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    tail = sub.add_parser("tail", help="print match and status events as they arrive")
    tail.add_argument("--host", default="127.0.0.1")
    tail.add_argument("--port", type=int, default=1883)
    tail.add_argument("--config", "-c", type=Path, help="take broker settings and prefix from a device config")
    tail.add_argument("--prefix", default=None, help=f"topic prefix (default {DEFAULT_PREFIX})")
    tail.add_argument("--device-id", help="only this device id")
    tail.add_argument("--json", action="store_true", help="JSON lines instead of text")
    tail.add_argument("--heartbeats", action="store_true", help="also print heartbeats")
    tail.add_argument("--count", type=int, default=0, help="exit after this many match events")
    tail.add_argument("--timeout", type=float, default=0.0, help="exit after this many seconds")
    tail.set_defaults(func=_tail)

    video = commands.add_parser("video", help="make test videos from still photos")
    vsub = video.add_subparsers(dest="video_command", metavar="ACTION", required=True)
    make = vsub.add_parser("make", help="a 1280x720 video panning/zooming across faces-dev photos")
    make.add_argument("out", type=Path, help="output video (.mp4 or .avi)")
    make.add_argument("--faces-dev", type=Path, default=DEFAULT_FACES_DEV)
    make.add_argument("--fps", type=float, default=25.0)
    make.add_argument("--photo-seconds", type=float, default=3.0, help="seconds per group photo")
    make.add_argument("--photos", default="bbt1,bbt2,bbt3,bbt4,bbt5", help="group photos, comma-separated")
    make.add_argument("--blank-seconds", type=float, default=1.0, help="faceless frames after each photo")
    make.add_argument("--no-strangers", action="store_true", help="leave out the seven strangers")
    make.add_argument("--repeat", type=int, default=1)
    make.add_argument("--hold", metavar="IDENTITY", help="instead: only this person (from bbt1) in view")
    make.add_argument("--seconds", type=float, default=180.0, help="with --hold: length")
    make.set_defaults(func=_video)


def _load(args: argparse.Namespace) -> DeviceConfig:
    overrides = list(args.set)
    for flag, key in (
        ("source", "source.url"),
        ("device_id", "device_id"),
        ("device", "models.device"),
        ("mqtt_host", "mqtt.host"),
        ("mqtt_port", "mqtt.port"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.config is None and not overrides:
        raise ConfigError("no config: give --config FILE (see `lookout run --example-config`)")
    return load_config(args.config, overrides=overrides)


def _run(args: argparse.Namespace) -> int:
    if args.example_config:
        print(example_config(), end="")
        return 0
    cfg = _load(args)
    if args.check_config:
        return check_config(cfg)

    return Runtime(cfg).run()


def _tail(args: argparse.Namespace) -> int:

    if args.config:
        cfg = load_config(args.config)
        settings: MqttSettings = cfg.mqtt.model_copy(update={"client_id": ""})
        prefix = args.prefix or cfg.mqtt.topic_prefix
    else:
        settings = MqttSettings(host=args.host, port=args.port)
        prefix = args.prefix or DEFAULT_PREFIX
    tail(
        settings,
        prefix=prefix,
        device=args.device_id,
        as_json=args.json,
        heartbeats=args.heartbeats,
        count=args.count,
        timeout=args.timeout,
    )
    return 0


def _video(args: argparse.Namespace) -> int:

    if not (args.faces_dev / "groups.csv").exists():
        raise ConfigError(f"--faces-dev {args.faces_dev}: not a faces-dev folder (no groups.csv)")
    if args.hold:
        info = make_hold_video(args.out, args.faces_dev, identity=args.hold, seconds=args.seconds, fps=args.fps)
    else:
        info = make_scene_video(
            args.out,
            args.faces_dev,
            fps=args.fps,
            photo_s=args.photo_seconds,
            photos=tuple(p.strip() for p in args.photos.split(",") if p.strip()),
            blank_s=args.blank_seconds,
            strangers=not args.no_strangers,
            repeat=args.repeat,
        )
    print(
        f"{info.path}: {info.frames} frames, {info.duration_s:.1f} s at {info.fps:g} fps, {info.size[0]}x{info.size[1]}"
    )
    for s in info.segments:
        who = f"  {', '.join(s.identities)}" if s.identities else ""
        print(f"  {s.start_s:6.1f}-{s.end_s:6.1f} s  {s.kind:8s} {s.source}{who}")
    return 0


__all__ = ["LookoutError", "register"]
