"""`lookout package greengrass` and the component's lifecycle, run as Greengrass would run it.

Slow: packaging builds a wheel of every dependency (openvino, opencv: ~180 MB; pip's
cache makes later runs quick), so it happens once per module and the tests are few.
No AWS: the lifecycle scripts run with the environment and the recipe variables a
nucleus would give them, install OFFLINE from the shipped wheels into a fresh
virtualenv, and the device publishes to a local mosquitto.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from lookout.greengrass.package import PackageOptions, package
from lookout.greengrass.recipe import (
    artifact_digest,
    device_defaults,
    load_recipe,
    recipe_problems,
    resolve_pointer,
)
from tests.helpers import Subscriber
from tests.test_greengrass_recipe import validate_against_schema

pytestmark = pytest.mark.slow  # see README, Tests

PROJECT = Path(__file__).resolve().parents[1]
THING = "gg-core-test-1"


@pytest.fixture(scope="module")
def packaged(tmp_path_factory, model_store):
    out = tmp_path_factory.mktemp("gg-package")
    opts = PackageOptions(
        out=out,
        project=PROJECT,
        version="1.0.0",
        uri_base="s3://lookout-test-bucket/components",
        model_dir=model_store.root,
    )
    result = package(opts)
    return out, result


def test_package_has_every_artifact_the_recipe_names(packaged):
    out, result = packaged
    recipe = load_recipe(result.recipe_path)
    assert result.recipe_path == out / "recipes" / "com.lookout.Device-1.0.0.yaml"
    validate_against_schema(recipe)
    assert recipe_problems(recipe) == []
    assert [m["Platform"]["architecture"] for m in recipe["Manifests"]] == [
        "amd64" if os.uname().machine == "x86_64" else "aarch64"
    ]
    for manifest in recipe["Manifests"]:
        for artifact in manifest["Artifacts"]:
            name = artifact["Uri"].rsplit("/", 1)[-1]
            assert artifact["Uri"] == f"s3://lookout-test-bucket/components/com.lookout.Device/1.0.0/{name}"
            path = out / "artifacts" / "com.lookout.Device" / "1.0.0" / name
            assert path.is_file(), f"{name} named by the recipe is not in the package"
            assert artifact["Algorithm"] == "SHA-256" and artifact["Digest"] == artifact_digest(path)
    code = zipfile.ZipFile(result.artifact_dir / f"lookout-device-linux-{os.uname().machine}.zip")
    names = set(code.namelist())
    assert {"greengrass/install.sh", "greengrass/run.sh", "wheelhouse/requirements.txt", "wheelhouse/DIGEST"} <= names
    pins = code.read("wheelhouse/requirements.txt").decode().split()
    assert "lookout==0.1.0" in pins and any(p.startswith("awsiotsdk==") for p in pins)
    assert not any("pytest" in p or "moto" in p for p in pins), "dev dependencies do not ship to devices"
    shipped_defaults = json.loads(code.read("greengrass/default-configuration.json"))
    assert shipped_defaults == device_defaults(recipe)
    models = zipfile.ZipFile(result.artifact_dir / "lookout-models.zip")
    for model in (shipped_defaults["detector"], shipped_defaults["embedder"]):
        manifest = json.loads(models.read(f"{model}/manifest.json"))
        for file_name, digest in manifest["files"].items():
            import hashlib

            assert hashlib.sha256(models.read(f"{model}/{file_name}")).hexdigest() == digest


# -- the lifecycle, as a nucleus would run it ---------------------------------------------


def _unarchive(result, root: Path) -> Path:
    """Greengrass unpacks each ZIP artifact into {artifacts:decompressedPath}/<name without .zip>/."""
    decompressed = root / "packages" / "artifacts-unarchived" / "com.lookout.Device" / "1.0.0"
    for zip_path in result.artifact_dir.glob("*.zip"):
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(decompressed / zip_path.stem)
    return decompressed


def _interpolate(text: str, variables: dict[str, str], config: dict) -> str:
    def one(m: re.Match) -> str:
        kind, name = m.group(1), m.group(2)
        if kind == "configuration":
            value = resolve_pointer(config, name)
            return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        return variables[f"{kind}:{name}"]

    return re.sub(r"\{(artifacts|work|iot|configuration|kernel):([^}]*)\}", one, text)


def _lifecycle(recipe: dict, variables: dict[str, str], config: dict) -> dict:
    """The manifest of this machine with every recipe variable substituted; step -> (script, env)."""
    arch = {"x86_64": "amd64", "aarch64": "aarch64"}[os.uname().machine]
    manifest = next(m for m in recipe["Manifests"] if m["Platform"]["architecture"] == arch)
    lifecycle = manifest["Lifecycle"]
    common = {k: _interpolate(str(v), variables, config) for k, v in lifecycle.get("Setenv", {}).items()}
    steps = {}
    for step in ("Install", "Startup", "Shutdown"):
        spec = lifecycle[step]
        env = {**common, **{k: _interpolate(str(v), variables, config) for k, v in spec.get("Setenv", {}).items()}}
        steps[step] = (_interpolate(spec["Script"], variables, config), env, int(spec.get("Timeout", 120)))
    return steps


def _run_step(steps, step: str, base_env: dict, cwd: Path) -> subprocess.CompletedProcess:
    script, env, timeout = steps[step]
    return subprocess.run(
        ["sh", "-c", script], env={**base_env, **env}, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _scene_video(path: Path) -> None:
    import matplotlib

    grace = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (1280, 720))
    for i in range(40):
        frame = np.full((720, 1280, 3), 40, np.uint8)
        if i < 30:
            frame[60:620, 100 + 4 * i : 580 + 4 * i] = cv2.resize(cv2.flip(grace, 1), (480, 560))
        writer.write(frame)
    writer.release()


def _gallery(root: Path, model_dir: Path, jurisdiction: str) -> tuple[Path, str]:
    """A signed bundle of the faces shipped in matplotlib and scikit-image, published in a folder."""
    import matplotlib
    from skimage import data

    people = root / "people"
    (people / "grace_hopper").mkdir(parents=True)
    (people / "eileen_collins").mkdir(parents=True)
    (people / "grace_hopper" / "1.jpg").write_bytes(
        (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").read_bytes()
    )
    cv2.imwrite(str(people / "eileen_collins" / "1.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    lookout = [sys.executable, "-m", "lookout", "--log-level", "warning"]
    for cmd in (
        ["keys", "generate", "--out", str(root / "keys")],
        [
            "gallery",
            "build",
            str(people),
            "--key",
            str(root / "keys" / "bundle-signing.key.pem"),
            "--out",
            str(root / "bundle"),
            "--no-progress",
            "--jurisdiction",
            jurisdiction,
            "--model-dir",
            str(model_dir),
        ],
        ["gallery", "publish", str(root / "bundle"), "--to", str(root / "published")],
    ):
        proc = subprocess.run(lookout + cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    return root / "published", (root / "keys" / "bundle-signing.pub.pem").read_text()


def test_install_and_run_lifecycle_offline_against_local_mosquitto(
    packaged, mosquitto, tmp_path, model_store, jurisdiction
):
    _out, result = packaged
    recipe = load_recipe(result.recipe_path)
    published, public_pem = _gallery(tmp_path / "gallery", model_store.root, jurisdiction)
    video = tmp_path / "scene.mp4"
    _scene_video(video)
    root = tmp_path / "greengrass" / "v2"
    decompressed = _unarchive(result, root)
    work = root / "work" / "com.lookout.Device"
    work.mkdir(parents=True)
    # the deployment's configuration merge: default configuration plus what an operator would set
    config = {
        **recipe["ComponentConfiguration"]["DefaultConfiguration"],
        "jurisdiction": jurisdiction,  # required: with none, the component refuses to start
        "source": str(video),
        "bundleUrl": published.as_uri(),
        "bundlePublicKey": public_pem,
        "publisher": "mqtt",
        "mqttPort": float(mosquitto.port),  # numbers come back as floats
        "python": sys._base_executable,
        "startTimeoutSeconds": 180.0,
        "heartbeatSeconds": 5.0,
    }
    variables = {
        "artifacts:decompressedPath": str(decompressed),
        "artifacts:path": str(root / "packages"),
        "work:path": str(work),
        "kernel:rootPath": str(root),
        "iot:thingName": THING,
    }
    steps = _lifecycle(recipe, variables, config)
    base_env = {  # what the nucleus sets for every component, plus a minimal PATH
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "AWS_IOT_THING_NAME": THING,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "GGC_VERSION": "2.14.0",
        "SVCUID": "not-a-real-token",
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": str(root / "ipc.socket"),
        "LOOKOUT_DEVICE__SOURCE__LOOP": "true",  # keep the camera "live" for the test
        "PIP_NO_INDEX": "1",  # offline
    }

    install = _run_step(steps, "Install", base_env, work)
    assert install.returncode == 0, install.stdout + install.stderr
    assert (work / "venv" / "bin" / "python").exists()
    venv_cfg = (work / "venv" / "pyvenv.cfg").stat()
    again = _run_step(steps, "Install", base_env, work)  # every nucleus start runs Install again
    assert again.returncode == 0 and "up to date" in again.stdout
    kept = (work / "venv" / "pyvenv.cfg").stat()  # the same virtualenv: nothing reinstalled
    assert (kept.st_ino, kept.st_mtime_ns) == (venv_cfg.st_ino, venv_cfg.st_mtime_ns)

    sub = Subscriber(mosquitto.port)
    try:
        startup = _run_step(steps, "Startup", base_env, work)
        assert startup.returncode == 0, startup.stdout + startup.stderr + _logs(work)
        ready = json.loads((work / "lookout.ready").read_text())
        assert ready["device_id"] == THING and ready["bundle_version"] == "1" and ready["publisher"] == "mqtt"
        logs = partial(_logs, work)
        sub.first(lambda t, m: t == f"dt/lookout/{THING}/status" and m["state"] == "online", 30, logs)
        match = sub.first(lambda t, m: t == f"dt/lookout/{THING}/match", 60, logs)
        assert match[1]["person_id"] == "grace_hopper" and match[1]["device_id"] == THING
        assert "eileen_collins" not in {m.get("person_id") for m in sub.json("/match")}

        shutdown = _run_step(steps, "Shutdown", base_env, work)
        assert shutdown.returncode == 0, shutdown.stdout + shutdown.stderr
        sub.first(lambda t, m: t.endswith("/status") and m["state"] == "offline", 15, logs)
        assert not (work / "lookout.pid").exists()
    finally:
        subprocess.run(
            ["sh", "-c", steps["Shutdown"][0]],
            env={**base_env, **steps["Shutdown"][1]},
            capture_output=True,
            timeout=60,
        )
        sub.close()


def _logs(work: Path) -> str:
    text = []
    for name in ("logs/stdout.log", "logs/lookout.log"):
        path = work / name
        if path.exists():
            text.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    return "\n".join(text)
