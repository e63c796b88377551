"""The local model cache: verify and open models by name (fetching is ``lookout.models.install``).

Layout (default root: the user's cache dir, e.g. ~/.cache/lookout/models;
override with ``LOOKOUT_MODEL_DIR`` or ``--model-dir``)::

    <root>/downloads/<archive>          the pinned PyPI archives
    <root>/<name>/source/<file>         the model file taken from the archive, or the
                                        publisher's files (same relative paths as its URLs)
    <root>/<name>/model.xml, model.bin  OpenVINO IR
    <root>/<name>/manifest.json         see ModelManifest

Nothing here touches the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import openvino as ov
import platformdirs

from lookout.digest import sha256_file
from lookout.errors import ModelError
from lookout.log import get_logger
from lookout.model_store.catalog import ALL_MODELS, get_spec
from lookout.model_store.manifest import ModelManifest

log = get_logger(__name__)
MODEL_DIR_ENV = "LOOKOUT_MODEL_DIR"
IR_FILES = ("model.xml", "model.bin")


def default_model_dir() -> Path:
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("lookout")) / "models"


@dataclass(frozen=True)
class ModelStatus:
    name: str
    present: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.present and not self.problems


class ModelStore:
    """Models in one cache folder, each refused at load when a file differs from its manifest."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_model_dir()

    def folder(self, name: str) -> Path:
        return self.root / name

    def manifest(self, name: str) -> ModelManifest:
        """The manifest of a registry model, or of a model derived from one (``facenet-int8``)."""
        if name in ALL_MODELS:
            return ModelManifest.read(self.folder(name))
        folder = self.folder(name)
        if (folder / "manifest.json").exists():
            manifest = ModelManifest.read(folder)
            if manifest.extra.get("derived_from") in ALL_MODELS:
                return manifest
        get_spec(name)  # raises: unknown model
        raise AssertionError("unreachable")

    def derived_models(self) -> list[str]:
        """Models made here from registry models (e.g. INT8 by `lookout models quantize`), by folder name."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(p for p in self.root.iterdir() if p.name not in ALL_MODELS and p.is_dir()):
            try:
                if ModelManifest.read(folder).extra.get("derived_from") in ALL_MODELS:
                    found.append(folder.name)
            except ModelError:
                continue
        return found

    def status(self, name: str) -> ModelStatus:
        folder = self.folder(name)
        if not (folder / "manifest.json").exists():
            return ModelStatus(name, False, ("not fetched",))
        try:
            manifest = self.manifest(name)
        except ModelError as err:
            return ModelStatus(name, True, (str(err),))
        return ModelStatus(name, True, tuple(file_problems(folder, manifest)))

    def statuses(self) -> list[ModelStatus]:
        return [self.status(name) for name in [*ALL_MODELS, *self.derived_models()]]

    def available(self, name: str) -> str:
        """``name``, or its PyPI fallback when ``name`` was never fetched here (no mirror, no internet)
        and the fallback was: said in one log line. Galleries record the model they were built with and
        devices refuse a gallery of another model, so the stand-in cannot mix scores."""
        spec = ALL_MODELS.get(name)
        if spec is None or spec.fallback is None or self.status(name).present:
            return name
        if not self.status(spec.fallback).ok:
            return name
        log.warning(
            "model.fallback",
            wanted=name,
            using=spec.fallback,
            why=f"{name} is not fetched (no Open Model Zoo mirror or internet): `lookout models fetch` gets it",
        )
        return spec.fallback

    def read_model(self, name: str) -> tuple[ov.Model, ModelManifest]:
        """Open a model after checking every file against its manifest; refuse on any mismatch.
        A model that was never fetched but has a fetched fallback opens as the fallback (``available``)."""
        name = self.available(name)
        folder = self.folder(name)
        manifest = self.manifest(name)
        problems = file_problems(folder, manifest)
        if problems:
            raise ModelError(f"model {name} refused: " + "; ".join(problems))
        core = ov.Core()
        # Read the weights rather than map the file: OpenVINO's CPU plugin keeps a mapped file mapped (and
        # resident) for the compiled model's life although it repacks the weights it computes with; read,
        # they are freed once compiled. 21 MB less resident for dlib-resnet (docs/benchmarks.md).
        core.set_property({"ENABLE_MMAP": False})
        return core.read_model(folder / "model.xml", folder / "model.bin"), manifest


def file_problems(folder: Path, manifest: ModelManifest) -> list[str]:
    problems = []
    for file_name, expected in manifest.files.items():
        path = folder / file_name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != expected:
            problems.append(f"{path}: SHA-256 differs from the manifest (corrupt or modified)")
    return problems
