"""Installing a model into the store: download the pinned package (or the publisher's files, or
copy them from a mirror), take the model file out of it, convert it to OpenVINO IR and write the
IR with its manifest (``lookout models fetch``).

Conversion is reproducible: the same package gives the same IR bytes on every machine,
so a gallery built in the cloud carries the digest of the device's own conversion.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import openvino as ov

from lookout.digest import sha256_file
from lookout.log import get_logger
from lookout.model_store.catalog import ModelSpec, PackageSource, UrlSource, get_spec
from lookout.model_store.manifest import ModelManifest
from lookout.model_store.store import IR_FILES, ModelStore
from lookout.models.convert import CONVERTERS
from lookout.models.fetch import download_archive, extract_member, fetch_url_files

log = get_logger(__name__)


def source_file(store: ModelStore, name: str) -> Path:
    """Where the model file taken out of its package is kept (``<root>/<name>/source/<file>``);
    for a URL-sourced model, its IR's XML among the publisher's files (same relative paths)."""
    spec = get_spec(name)
    if isinstance(spec.source, UrlSource):
        return store.folder(name) / "source" / spec.source.ir_xml.path
    return store.folder(name) / "source" / Path(spec.source.member).name


def install(store: ModelStore, name: str, force: bool = False, mirror: Path | None = None) -> ModelManifest:
    """Download (if needed), verify, convert and describe one model. Idempotent.

    ``mirror``: a folder holding a URL-sourced model's files (default: the spec's
    environment variable, e.g. ``LOOKOUT_OMZ_MIRROR``)."""
    spec = get_spec(name)
    if not force and store.status(name).ok:
        return store.manifest(name)
    if isinstance(spec.source, UrlSource):
        fetch_url_files(spec.source, store.folder(name) / "source", mirror)
        source = source_file(store, name)
    else:
        archive = download_archive(spec.source, store.root / "downloads")
        source = extract_member(spec.source, archive, source_file(store, name))
    log.info("model.convert", name=name, source=source.name)
    model = CONVERTERS[spec.converter](source, spec)
    folder = store.folder(spec.name)
    manifest = _describe(spec, write_ir(model, folder))
    manifest.write(folder)
    log.info("model.ready", name=spec.name, digest=manifest.digest[:16], folder=str(folder))
    return manifest


def write_ir(model: ov.Model, folder: Path) -> dict[str, str]:
    """Save ``model`` as IR in ``folder`` (staged, then moved in place); returns each IR file's SHA-256."""
    staging = folder / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _name_nodes_stably(model)
    ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
    files = {f: sha256_file(staging / f) for f in IR_FILES}
    for f in IR_FILES:
        (staging / f).replace(folder / f)
    shutil.rmtree(staging)
    return files


_AUTO_NAME = re.compile(r"[A-Za-z0-9]+_\d+")


def _name_nodes_stably(model: ov.Model) -> None:
    """Give nodes built in Python (auto-named like ``Convert_19177`` from a process-wide counter)
    names from their place in the graph, so converting the same model anywhere writes the same
    bytes and so the same digest: a gallery built in the cloud must match the device's model."""
    for position, node in enumerate(model.get_ordered_ops()):
        if _AUTO_NAME.fullmatch(node.get_friendly_name()):
            node.set_friendly_name(f"{node.get_type_name()}_{position}")


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
