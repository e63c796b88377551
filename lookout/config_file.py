"""Config files for every Lookout service, read one way.

A settings model (pydantic) is filled from, lowest precedence first: its
defaults, a YAML/TOML/JSON file, environment variables ``<PREFIX><SECTION>__<KEY>``
and ``--set section.key=value`` flags. Values from the environment and flags
are parsed as YAML scalars (``8883``, ``true``, ``[a, b]``). Every problem is
reported at once, each with the key, the bad value and where it came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import tomllib
import yaml
from pydantic import BaseModel, ValidationError

from lookout.errors import ConfigError, InputError
from lookout.files import read_text_file

Settings = TypeVar("Settings", bound=BaseModel)
Override = tuple[list[str], object, str]  # (key path, value, where it came from)


def read_mapping(path: Path, what: str = "config file") -> dict[str, Any]:
    """Parse a YAML (default), TOML (``.toml``) or JSON (``.json``) file that must hold a mapping."""
    try:
        text = read_text_file(path, what)  # regular files only, size-capped: never /dev/zero or a pipe
    except InputError as err:
        raise ConfigError(f"{path}: cannot read {err.reason}") from None
    suffix = path.suffix.lower()
    kind = {".toml": "TOML", ".json": "JSON"}.get(suffix, "YAML")
    try:
        doc = tomllib.loads(text) if kind == "TOML" else json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not valid {kind}: {err}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the {what} must be a mapping of sections, got {type(doc).__name__}")
    return doc


def parse_scalar(raw: str, where: str) -> object:
    if raw == "":
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not a valid value: {err}") from None


def env_overrides(environ: dict[str, str], prefix: str) -> list[Override]:
    """``LOOKOUT_DEVICE__MQTT__PORT=8883`` with prefix ``LOOKOUT_DEVICE__`` -> (["mqtt", "port"], 8883, ...)."""
    out = []
    for name, raw in sorted(environ.items()):
        if name.upper().startswith(prefix):
            keys = [k.lower() for k in name[len(prefix) :].split("__") if k]
            if keys:
                out.append((keys, parse_scalar(raw, f"environment {name}"), f"environment {name}"))
    return out


def flag_overrides(assignments: Iterable[str]) -> list[Override]:
    """``--set mqtt.port=8883`` -> (["mqtt", "port"], 8883, "--set mqtt.port")."""
    out = []
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        out.append(([k for k in key.strip().split(".") if k], parse_scalar(raw, f"--set {key}"), f"--set {key}"))
    return out


def set_path(doc: dict[str, Any], keys: list[str], value: object, where: str) -> None:
    node = doc
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {'.'.join(keys)}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def describe_errors(err: ValidationError, origins: dict[str, str], limit: int = 10) -> str:
    """One indented line per problem: key, message, the bad value, and its origin if not the file."""
    lines = []
    for item in err.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        msg = item["msg"].removeprefix("Value error, ")
        got = ""
        if item["type"] not in ("missing", "extra_forbidden") and not isinstance(item.get("input"), dict):
            got = f" (got {item.get('input')!r})"
        origin = origins.get(where)
        lines.append(f"  {where}: {msg}{got}" + (f" [from {origin}]" if origin else ""))
    more = err.error_count() - len(lines)
    if more > 0:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)


def load_settings(
    model: type[Settings],
    path: Path | str | None,
    *,
    env_prefix: str,
    what: str,
    environ: dict[str, str] | None = None,
    overrides: Iterable[str] = (),
) -> tuple[Settings, Path]:
    """Build ``model`` from defaults, file, environment and flags. Returns it with the folder that
    relative paths in it are relative to (the file's, else the working directory)."""
    environ = dict(os.environ if environ is None else environ)
    doc: dict[str, Any] = {}
    source, base = f"{what} (defaults)", Path.cwd()
    if path is not None:
        path = Path(path)
        doc = read_mapping(path, f"{what} file")
        source, base = str(path), path.resolve().parent
    origins: dict[str, str] = {}
    for keys, value, where in env_overrides(environ, env_prefix) + flag_overrides(overrides):
        set_path(doc, keys, value, where)
        origins[".".join(keys)] = where
    try:
        return model.model_validate(doc), base
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid configuration:\n{describe_errors(err, origins)}") from None
