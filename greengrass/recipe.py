"""The Greengrass recipe: read the template, check it, write it.

Checks that the Greengrass tooling does not do (the published JSON Schema checks
shape only): every ``{configuration:/...}`` variable resolves to a key of the
default configuration, the ``aws.greengrass.ipc.mqttproxy`` access control is
limited to this device's own Lookout topics, and the recipe stays under the
16,000-byte limit.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from lookout.errors import ConfigError, InputError
from lookout.topics import DEFAULT_PREFIX

TEMPLATE_NAME = "greengrass/recipe.yaml"  # in the checkout (greengrass-recipe.yaml at the root links to it)
SCRIPTS_DIR = "greengrass/scripts"  # the lifecycle scripts, shipped as greengrass/<name> in the code archive
MAX_RECIPE_BYTES = 16_000
MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
PUBLISH = "aws.greengrass#PublishToIoTCore"
THING = "{iot:thingName}"
DEVICE_TOPICS = ("match", "status", "heartbeat")  # see lookout.topics
# Greengrass platform architecture for each `uname -m`.
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "aarch64"}

_CONFIG_REF = re.compile(r"\{configuration:(/[^}]*)\}")
_VARIABLE = re.compile(r"\{([a-zA-Z]+):([^}]*)\}")
_KNOWN_VARIABLES = {
    "artifacts": {"path", "decompressedPath"},
    "work": {"path"},
    "kernel": {"rootPath"},
    "iot": {"thingName"},
}


def project_root(start: Path | None = None) -> Path:
    """The source checkout holding pyproject.toml and the recipe template."""
    here = Path(start) if start else Path(__file__).resolve().parents[1]
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / TEMPLATE_NAME).is_file():
            return folder
    raise ConfigError(
        f"no Lookout source checkout found from {here} (needs pyproject.toml and {TEMPLATE_NAME}); "
        "run `lookout package` from a clone of the repository, or pass --project"
    )


def load_recipe(path: Path) -> dict:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(str(path), f"cannot read: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise InputError(str(path), f"not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise InputError(str(path), "a recipe must be a mapping")
    return doc


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_recipe(recipe: dict) -> str:
    return yaml.dump(recipe, Dumper=_NoAliasDumper, sort_keys=False, width=4096, allow_unicode=True)


def lower_keys(value: Any) -> Any:
    """Every mapping key lower-cased, as the Greengrass tooling does before schema validation."""
    if isinstance(value, dict):
        return {str(k).lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


def artifact_digest(path: Path) -> str:
    """The Digest Greengrass checks: base64 of the raw SHA-256 of the file (Algorithm SHA-256)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode("ascii")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def default_configuration(recipe: dict) -> dict:
    config = (recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {}
    if not isinstance(config, dict):
        raise ConfigError("ComponentConfiguration.DefaultConfiguration must be a mapping")
    return config


def device_defaults(recipe: dict) -> dict:
    """The default configuration without accessControl: what the device reads."""
    return {k: v for k, v in default_configuration(recipe).items() if k != "accessControl"}


def configuration_references(recipe: dict) -> set[str]:
    """Every JSON pointer used as ``{configuration:/pointer}`` outside the configuration itself."""
    rest = {k: v for k, v in recipe.items() if k != "ComponentConfiguration"}
    return {m.group(1) for s in _strings(rest) for m in _CONFIG_REF.finditer(s)}


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """RFC 6901 JSON pointer; KeyError when a part is missing."""
    node = doc
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(pointer)
    return node


def reference_problems(recipe: dict) -> list[str]:
    """Recipe variables that would not resolve on a device."""
    problems = []
    config = default_configuration(recipe)
    for pointer in sorted(configuration_references(recipe)):
        try:
            value = resolve_pointer(config, pointer)
        except KeyError:
            problems.append(f"{{configuration:{pointer}}} names no key of DefaultConfiguration")
            continue
        if isinstance(value, (dict, list)):
            problems.append(
                f"{{configuration:{pointer}}} is a {type(value).__name__}; lifecycle variables need a scalar"
            )
    rest = {k: v for k, v in recipe.items() if k != "ComponentConfiguration"}
    for text in _strings(rest):
        for m in _VARIABLE.finditer(text):
            kind, name = m.group(1), m.group(2)
            if kind == "configuration":
                continue
            if kind not in _KNOWN_VARIABLES or name not in _KNOWN_VARIABLES[kind]:
                problems.append(f"unknown recipe variable {m.group(0)}")
    return problems


def mqtt_policies(recipe: dict) -> dict[str, dict]:
    acl = default_configuration(recipe).get("accessControl") or {}
    return dict(acl.get(MQTT_PROXY) or {})


def allowed_topics(prefix: str = DEFAULT_PREFIX) -> set[str]:
    return {f"{prefix}/{THING}/{kind}" for kind in DEVICE_TOPICS}


def access_control_problems(recipe: dict, prefix: str | None = None) -> list[str]:
    """The mqttproxy policy must allow publishing this device's own Lookout topics and nothing else."""
    prefix = prefix or device_defaults(recipe).get("topicPrefix") or DEFAULT_PREFIX
    policies = mqtt_policies(recipe)
    if not policies:
        return [f"no {MQTT_PROXY} policy: the component could not publish over IPC"]
    problems, covered = [], set()
    allowed = allowed_topics(prefix)
    for policy_id, policy in policies.items():
        operations = set(policy.get("operations") or [])
        extra_ops = operations - {PUBLISH}
        if extra_ops:
            problems.append(f"policy {policy_id}: operations beyond publishing: {sorted(extra_ops)}")
        for resource in policy.get("resources") or []:
            if resource not in allowed:
                problems.append(
                    f"policy {policy_id}: resource {resource!r} is not one of this device's topics "
                    f"({', '.join(sorted(allowed))})"
                )
            covered.add(resource)
    missing = allowed - covered
    if missing:
        problems.append(f"topics the device publishes but may not: {sorted(missing)}")
    other_services = set(default_configuration(recipe).get("accessControl") or {}) - {MQTT_PROXY}
    if other_services:
        problems.append(f"access to other IPC services: {sorted(other_services)}")
    return problems


def recipe_problems(recipe: dict) -> list[str]:
    """Everything checkable without the JSON Schema: size, variables, access control, required fields."""
    problems = []
    size = len(dump_recipe(recipe).encode("utf-8"))
    if size > MAX_RECIPE_BYTES:
        problems.append(f"recipe is {size} bytes; Greengrass rejects recipes over {MAX_RECIPE_BYTES}")
    for key in ("RecipeFormatVersion", "ComponentName", "ComponentVersion", "Manifests"):
        if key not in recipe:
            problems.append(f"missing {key}")
    problems += reference_problems(recipe)
    problems += access_control_problems(recipe)
    return problems
