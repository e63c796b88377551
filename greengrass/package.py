"""`lookout package greengrass --out DIR`: the Greengrass v2 component, ready to deploy.

Writes the layout ``greengrass-cli deployment create --recipeDir DIR/recipes
--artifactDir DIR/artifacts`` expects, and that uploads to S3 as is::

    DIR/recipes/<name>-<version>.yaml
    DIR/artifacts/<name>/<version>/lookout-device-linux-<arch>.zip   code: wheels + lifecycle scripts
    DIR/artifacts/<name>/<version>/lookout-models.zip                converted models with manifests
    DIR/package.json                                                 what was built, with digests

The code archive holds a wheel for Lookout and for every dependency (built or
downloaded here with ``pip wheel``), so the device installs offline with
``pip install --no-index``; wheels are for this machine's architecture and the
Python given by ``--python``. Run the command again on a machine of the other
architecture with the same ``--out`` (and version) and the recipe gains that
platform's manifest. Archives are written byte-for-byte reproducibly, so packaging
unchanged inputs again gives the same digests (and the device skips reinstalling).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from lookout import __version__
from lookout.errors import ConfigError, LookoutError
from lookout.greengrass.recipe import (
    ARCHITECTURES,
    MQTT_PROXY,
    SCRIPTS_DIR,
    TEMPLATE_NAME,
    artifact_digest,
    default_configuration,
    device_defaults,
    dump_recipe,
    load_recipe,
    recipe_problems,
)
from lookout.log import get_logger
from lookout.model_store.store import IR_FILES, ModelStore

log = get_logger(__name__)

DEFAULT_COMPONENT = "com.lookout.Device"
DEFAULT_URI_BASE = "s3://YOUR-BUCKET/lookout"
# The Greengrass IPC client; optional extra `greengrass` of the lookout package.
AWSIOTSDK_PIN = "awsiotsdk==1.31.0"
SCRIPTS = ("install.sh", "run.sh")
MODELS_ZIP = "lookout-models.zip"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_COMPONENT_NAME = re.compile(r"^[a-zA-Z0-9-_.]{1,128}$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


class PackagingError(LookoutError):
    """The component could not be built; the message says which step and why."""


def code_zip_name(arch: str) -> str:
    return f"lookout-device-linux-{arch}.zip"


@dataclass
class PackageOptions:
    out: Path
    project: Path
    component_name: str = DEFAULT_COMPONENT
    version: str = __version__
    uri_base: str = DEFAULT_URI_BASE
    models: tuple[str, ...] = ()  # default: the detector and embedder of the recipe's configuration
    model_dir: Path | None = None
    python: str = sys.executable
    find_links: tuple[Path, ...] = ()
    no_index: bool = False


@dataclass
class PackageResult:
    recipe_path: Path
    artifact_dir: Path
    artifacts: dict[str, str] = field(default_factory=dict)  # file name -> base64 SHA-256 digest
    architectures: list[str] = field(default_factory=list)
    python_tag: str = ""
    wheels: list[str] = field(default_factory=list)


# -- small helpers -----------------------------------------------------------------------


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    log.info("package.run", step=what, cmd=" ".join(str(c) for c in cmd[:6]) + (" ..." if len(cmd) > 6 else ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise PackagingError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc


def _interpreter(python: str) -> tuple[str, str]:
    """(python tag like cp311, machine like x86_64) of the interpreter wheels are built for."""
    proc = _run(
        [python, "-c", "import sys, platform; print('cp%d%d' % sys.version_info[:2], platform.machine())"],
        f"asking {python} for its version",
    )
    tag, machine = proc.stdout.split()
    return tag, machine


def write_zip(dest: Path, entries: list[tuple[str, Path | bytes]], *, compress: bool) -> None:
    """A reproducible ZIP: sorted entries, fixed timestamps and permissions."""
    tmp = dest.with_name(dest.name + ".tmp")
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(tmp, "w", method, compresslevel=6 if compress else None) as zf:
        for arcname, src in sorted(entries, key=lambda e: e[0]):
            info = zipfile.ZipInfo(arcname, _ZIP_TIME)
            info.compress_type = method
            info.external_attr = (0o100755 if arcname.endswith(".sh") else 0o100644) << 16
            data = src if isinstance(src, bytes) else Path(src).read_bytes()
            zf.writestr(info, data)
    os.replace(tmp, dest)


def _wheel_name_version(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


# -- wheels --------------------------------------------------------------------------------


def _requirements(project: Path) -> list[str]:
    """What to build: the project, with the Greengrass IPC client (the `greengrass` extra once it exists)."""
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    extras = meta.get("project", {}).get("optional-dependencies", {})
    if "greengrass" in extras:
        return [f"{project}[greengrass]"]
    return [str(project), AWSIOTSDK_PIN]


def build_wheelhouse(opts: PackageOptions, dest: Path) -> list[Path]:
    """Wheels for Lookout and all its runtime dependencies (no dev tools) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [opts.python, "-m", "pip", "wheel", "--disable-pip-version-check", "--wheel-dir", str(dest)]
    for link in opts.find_links:
        cmd += ["--find-links", str(link)]
    if opts.no_index:
        cmd.append("--no-index")
    cmd += _requirements(opts.project)
    # fixed timestamps in the wheels built here: unchanged sources give the same bytes, the same
    # wheelhouse digest, and the device's Install step skips reinstalling
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
    _run(cmd, "building wheels (pip wheel)", cwd=opts.project, env=env)
    wheels = sorted(dest.glob("*.whl"))
    sdists = [p.name for p in dest.iterdir() if not p.name.endswith(".whl")]
    if sdists:
        raise PackagingError(f"pip left files that are not wheels in the wheelhouse: {sdists}")
    ours = [w for w in wheels if _wheel_name_version(w)[0] == "lookout"]
    if not ours:
        raise PackagingError("no lookout wheel was built")
    with zipfile.ZipFile(ours[0]) as zf:
        names = set(zf.namelist())
    missing = [
        m
        for m in ("lookout/greengrass/launch.py", "lookout/greengrass/ipc_publisher.py", "lookout/device/__init__.py")
        if m not in names
    ]
    if missing:
        raise PackagingError(
            f"the lookout wheel lacks {missing}: add the package to [tool.setuptools] packages in pyproject.toml "
            '(e.g. "lookout.greengrass")'
        )
    return wheels


def wheelhouse_digest(wheels: list[Path]) -> str:
    h = hashlib.sha256()
    for w in sorted(wheels, key=lambda p: p.name):
        h.update(f"{w.name} {artifact_digest(w)}\n".encode())
    return h.hexdigest()


# -- archives -------------------------------------------------------------------------------


def build_code_zip(
    opts: PackageOptions, wheels: list[Path], python_tag: str, arch: str, recipe: dict, dest: Path
) -> None:
    scripts_dir = opts.project / SCRIPTS_DIR
    entries: list[tuple[str, Path | bytes]] = []
    for name in SCRIPTS:
        path = scripts_dir / name
        if not path.is_file():
            raise PackagingError(f"{path}: lifecycle script missing from the checkout")
        entries.append((f"greengrass/{name}", path))
    pins = sorted(f"{n}=={v}" for n, v in map(_wheel_name_version, wheels))
    digest = wheelhouse_digest(wheels)
    component = {
        "component": opts.component_name,
        "version": opts.version,
        "python_tag": python_tag,
        "architecture": arch,
        "wheelhouse_digest": digest,
    }
    entries += [
        ("greengrass/default-configuration.json", (json.dumps(device_defaults(recipe), indent=2) + "\n").encode()),
        ("greengrass/component.json", (json.dumps(component, indent=2) + "\n").encode()),
        ("wheelhouse/requirements.txt", ("\n".join(pins) + "\n").encode()),
        ("wheelhouse/PYTHON_TAG", f"{python_tag}\n".encode()),
        ("wheelhouse/DIGEST", f"{digest}\n".encode()),
    ]
    entries += [(f"wheelhouse/{w.name}", w) for w in wheels]
    write_zip(dest, entries, compress=False)  # wheels are compressed already


def build_models_zip(opts: PackageOptions, names: list[str], dest: Path) -> dict[str, str]:
    store = ModelStore(opts.model_dir)
    entries: list[tuple[str, Path | bytes]] = []
    digests = {}
    for name in names:
        status = store.status(name)
        if not status.ok:
            raise PackagingError(
                f"model {name} is not ready in {store.root}: {'; '.join(status.problems)} "
                f"(run `lookout models fetch {name}`)"
            )
        folder = store.folder(name)
        for file_name in (*IR_FILES, "manifest.json"):
            entries.append((f"{name}/{file_name}", folder / file_name))
        digests[name] = store.manifest(name).digest
    write_zip(dest, entries, compress=True)
    return digests


# -- recipe ------------------------------------------------------------------------------


def _arch_of(manifest: dict) -> str | None:
    wanted = (manifest.get("Platform") or {}).get("architecture")
    return next((machine for machine, gg in ARCHITECTURES.items() if gg == wanted), None)


def fill_recipe(template: dict, opts: PackageOptions, artifact_dir: Path) -> tuple[dict, list[str]]:
    """The template with name, version, URIs and digests; manifests only for architectures packaged."""
    recipe = json.loads(json.dumps(template))  # deep copy
    recipe["ComponentName"] = opts.component_name
    recipe["ComponentVersion"] = opts.version
    acl = default_configuration(recipe).get("accessControl", {})
    policies = acl.get(MQTT_PROXY, {})
    acl[MQTT_PROXY] = {f"{opts.component_name}:mqttproxy:{i}": p for i, p in enumerate(policies.values(), 1)}
    base = f"{opts.uri_base.rstrip('/')}/{opts.component_name}/{opts.version}"
    manifests, archs = [], []
    for manifest in recipe.get("Manifests", []):
        arch = _arch_of(manifest)
        if arch is None or not (artifact_dir / code_zip_name(arch)).is_file():
            continue
        for artifact in manifest.get("Artifacts", []):
            file_name = artifact["Uri"].rsplit("/", 1)[-1]
            path = artifact_dir / file_name
            if not path.is_file():
                raise PackagingError(f"the recipe names {file_name}, which was not built")
            artifact["Uri"] = f"{base}/{file_name}"
            artifact["Digest"] = artifact_digest(path)
            artifact["Algorithm"] = "SHA-256"
        manifests.append(manifest)
        archs.append(arch)
    if not manifests:
        raise PackagingError("no manifest of the template matches an architecture that was packaged")
    recipe["Manifests"] = manifests
    return recipe, archs


def package(opts: PackageOptions) -> PackageResult:
    if not _COMPONENT_NAME.match(opts.component_name) or opts.component_name.lower().startswith("aws."):
        raise ConfigError(f"component name {opts.component_name!r}: letters, digits, '-', '_', '.'; not aws.*")
    if not _SEMVER.match(opts.version):
        raise ConfigError(f"component version {opts.version!r}: Greengrass needs semantic versioning (e.g. 1.2.3)")
    template = load_recipe(opts.project / TEMPLATE_NAME)
    defaults = device_defaults(template)
    models = list(opts.models) or [defaults.get("detector", "blazeface-full"), defaults.get("embedder", "facenet")]
    python_tag, machine = _interpreter(opts.python)
    if machine not in ARCHITECTURES:
        raise PackagingError(f"architecture {machine} is not one the recipe supports ({', '.join(ARCHITECTURES)})")
    out = Path(opts.out)
    artifact_dir = out / "artifacts" / opts.component_name / opts.version
    artifact_dir.mkdir(parents=True, exist_ok=True)
    (out / "recipes").mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="lookout-wheels-") as tmp:
        wheels = build_wheelhouse(opts, Path(tmp))
        log.info("package.wheels", count=len(wheels), python=python_tag, arch=machine)
        # the recipe embedded in the archive carries the same defaults as the one published
        build_code_zip(opts, wheels, python_tag, machine, template, artifact_dir / code_zip_name(machine))
        wheel_names = [w.name for w in wheels]
    model_digests = build_models_zip(opts, models, artifact_dir / MODELS_ZIP)
    missing = {str(m) for m in (defaults.get("detector"), defaults.get("embedder")) if m is not None} - set(models)
    if missing:
        raise PackagingError(f"the default configuration uses {sorted(missing)}, which are not packaged (--model)")

    recipe, archs = fill_recipe(template, opts, artifact_dir)
    problems = recipe_problems(recipe)
    if problems:
        raise PackagingError("the recipe is not valid:\n  " + "\n  ".join(problems))
    recipe_path = out / "recipes" / f"{opts.component_name}-{opts.version}.yaml"
    recipe_path.write_text(dump_recipe(recipe), encoding="utf-8")
    artifacts = {p.name: artifact_digest(p) for p in sorted(artifact_dir.glob("*.zip"))}
    summary = {
        "component": opts.component_name,
        "version": opts.version,
        "recipe": str(recipe_path.relative_to(out)),
        "architectures": archs,
        "python_tag": python_tag,
        "models": model_digests,
        "artifacts": {
            name: {"sha256_base64": d, "bytes": (artifact_dir / name).stat().st_size} for name, d in artifacts.items()
        },
        "wheels": wheel_names,
    }
    (out / "package.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return PackageResult(recipe_path, artifact_dir, artifacts, archs, python_tag, wheel_names)


def next_steps(result: PackageResult, opts: PackageOptions) -> str:
    name, version = opts.component_name, opts.version
    out = Path(opts.out).resolve()
    lines = [
        f"recipe:    {result.recipe_path}",
        f"artifacts: {result.artifact_dir}",
    ]
    for file_name, digest in result.artifacts.items():
        size = (result.artifact_dir / file_name).stat().st_size
        lines.append(f"  {file_name}  {size / 1e6:.1f} MB  SHA-256 {digest}")
    lines += [
        f"platforms: linux {', '.join(result.architectures)}; wheels for {result.python_tag} "
        f"(the device's python3 must match)",
        "",
        "Deploy on one core device (local development):",
        f"  sudo /greengrass/v2/bin/greengrass-cli deployment create --recipeDir {out}/recipes "
        f"--artifactDir {out}/artifacts --merge {name}={version}",
        "Publish for a fleet:",
        f"  aws s3 cp --recursive {result.artifact_dir} {opts.uri_base.rstrip('/')}/{name}/{version}/",
        f"  aws greengrassv2 create-component-version --inline-recipe fileb://{result.recipe_path}",
        "See docs/deployment.md.",
    ]
    if opts.uri_base == DEFAULT_URI_BASE:
        lines.append(
            f"(artifact URIs use the placeholder {DEFAULT_URI_BASE}: pass --uri-base s3://BUCKET/PREFIX "
            "before publishing to the cloud; local deployments ignore it)"
        )
    return "\n".join(lines)
