"""The local model cache: fetch, convert, verify and open models by name.

Layout (default root: the user's cache dir, e.g. ~/.cache/lookout/models;
override with ``LOOKOUT_MODEL_DIR`` or ``--model-dir``)::

    <root>/downloads/<archive>          the pinned PyPI archives
    <root>/<name>/source/<file>         the model file taken from the archive
    <root>/<name>/model.xml, model.bin  OpenVINO IR
    <root>/<name>/manifest.json         see ModelManifest

Once fetched, nothing here touches the network.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import openvino as ov
import platformdirs
from lookout.models.convert import CONVERTERS
from lookout.models.fetch import download_archive, extract_member
from lookout.model_store.manifest import ModelManifest
from lookout.model_store.catalog import ALL_MODELS, ModelSpec, get_spec

from lookout.digest import sha256_file
from lookout.errors import ModelError
from lookout.log import get_logger

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
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_model_dir()

    def folder(self, name: str) -> Path:
        return self.root / name

    def source_file(self, name: str) -> Path:
        spec = get_spec(name)
        return self.folder(name) / "source" / Path(spec.source.member).name

    def fetch(self, name: str, force: bool = False) -> ModelManifest:
        """Download (if needed), verify, convert and describe one model. Idempotent."""
        spec = get_spec(name)
        if not force and self.status(name).ok:
            return self.manifest(name)
        archive = download_archive(spec.source, self.root / "downloads")
        source = extract_member(spec.source, archive, self.source_file(name))
        log.info("model.convert", name=name, source=source.name)
        model = CONVERTERS[spec.converter](source, spec)
        return self._save(spec, model)

    def _save(self, spec: ModelSpec, model: ov.Model) -> ModelManifest:
        folder = self.folder(spec.name)
        staging = folder / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _name_nodes_stably(model)
        ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
        manifest = _describe(spec, {f: sha256_file(staging / f) for f in IR_FILES})
        for f in IR_FILES:
            (staging / f).replace(folder / f)
        manifest.write(folder)
        shutil.rmtree(staging)
        log.info("model.ready", name=spec.name, digest=manifest.digest[:16], folder=str(folder))
        return manifest

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
        return ModelStatus(name, True, tuple(_file_problems(folder, manifest)))

    def statuses(self) -> list[ModelStatus]:
        return [self.status(name) for name in [*ALL_MODELS, *self.derived_models()]]

    def read_model(self, name: str) -> tuple[ov.Model, ModelManifest]:
        """Open a model after checking every file against its manifest; refuse on any mismatch."""
        folder = self.folder(name)
        manifest = self.manifest(name)
        problems = _file_problems(folder, manifest)
        if problems:
            raise ModelError(f"model {name} refused: " + "; ".join(problems))
        return ov.Core().read_model(folder / "model.xml", folder / "model.bin"), manifest


_AUTO_NAME = re.compile(r"[A-Za-z0-9]+_\d+")


def _name_nodes_stably(model: ov.Model) -> None:
    """Give nodes built in Python (auto-named like ``Convert_19177`` from a process-wide counter)
    names from their place in the graph, so converting the same model anywhere writes the same
    bytes and so the same digest: a gallery built in the cloud must match the device's model."""
    for position, node in enumerate(model.get_ordered_ops()):
        if _AUTO_NAME.fullmatch(node.get_friendly_name()):
            node.set_friendly_name(f"{node.get_type_name()}_{position}")


def _file_problems(folder: Path, manifest: ModelManifest) -> list[str]:
    problems = []
    for file_name, expected in manifest.files.items():
        path = folder / file_name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != expected:
            problems.append(f"{path}: SHA-256 differs from the manifest (corrupt or modified)")
    return problems


def _describe(spec: ModelSpec, files: dict[str, str]) -> ModelManifest:
    src = spec.source
    return ModelManifest(
        name=spec.name,
        kind=spec.kind,
        version=spec.version,
        description=spec.description,
        source_package=src.package,
        source_version=src.version,
        source_archive_sha256=src.archive_sha256,
        source_member=src.member,
        source_member_sha256=src.member_sha256,
        input_layout=spec.input_layout,
        input_size=list(spec.input_size),
        preprocessing=spec.preprocessing,
        output_dim=spec.output_dim,
        licence=spec.licence,
        alignment_template=[list(p) for p in spec.alignment_template],
        files=files,
        converted_with=ov.get_version(),
        extra=dict(spec.extra),
    )
