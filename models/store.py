"""The local model cache: fetch, convert, verify and open models by name.

Layout (default root: the user's cache dir, e.g. ~/.cache/lookout/models;
override with ``LOOKOUT_MODEL_DIR`` or ``--model-dir``)::

    <root>/downloads/<archive>          the pinned PyPI archives
    <root>/<name>/source/<file>         the model file taken from the archive, or the
                                        publisher's files (same relative paths as its URLs)
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
from lookout.models.fetch import download_archive, extract_member, fetch_url_files
from lookout.models.manifest import ModelManifest
from lookout.models.registry import ALL_MODELS, ModelSpec, PackageSource, UrlSource, get_spec

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
        if isinstance(spec.source, UrlSource):
            return self.folder(name) / "source" / spec.source.ir_xml.path
        return self.folder(name) / "source" / Path(spec.source.member).name

    def fetch(self, name: str, force: bool = False, mirror: Path | None = None) -> ModelManifest:
        """Download (if needed), verify, convert and describe one model. Idempotent.

        ``mirror``: a folder holding a URL-sourced model's files (default: the
        spec's environment variable, e.g. ``LOOKOUT_OMZ_MIRROR``)."""
        spec = get_spec(name)
        if not force and self.status(name).ok:
            return self.manifest(name)
        if isinstance(spec.source, UrlSource):
            fetch_url_files(spec.source, self.folder(name) / "source", mirror)
            source = self.source_file(name)
        else:
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


def _source_fields(source: PackageSource | UrlSource) -> dict:
    """The manifest's source fields: the PyPI archive and member, or the publisher's files by URL and SHA-384."""
    if isinstance(source, PackageSource):
        return {
            "source_package": source.package,
            "source_version": source.version,
            "source_archive_sha256": source.archive_sha256,
            "source_member": source.member,
            "source_member_sha256": source.member_sha256,
        }
    return {
        "source_package": source.publisher,
        "source_version": source.release,
        "source_archive_sha256": "",
        "source_member": source.ir_xml.path,
        "source_member_sha256": "",
        "source_files": {f.path: {"url": f.url, "sha384": f.sha384, "size": f.size} for f in source.files},
    }


def _describe(spec: ModelSpec, files: dict[str, str]) -> ModelManifest:
    return ModelManifest(
        name=spec.name,
        kind=spec.kind,
        version=spec.version,
        description=spec.description,
        **_source_fields(spec.source),
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
