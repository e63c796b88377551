"""INT8 quantisation with NNCF: a model of its own in the store whose embeddings agree with FP32."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lookout.evaluation.datasets import aligned_chips
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.model_store.store import ModelStore
from lookout.models.quantize import int8_name, quantize_embedder

pytestmark = [pytest.mark.shared, pytest.mark.slow]
MODEL = "dlib-resnet"  # the default embedder; quantises in a few seconds


@pytest.fixture(scope="module")
def nncf():
    return pytest.importorskip("nncf", reason="nncf is not installed: INT8 quantisation not tested (pip install nncf)")


def test_int8_embeddings_agree_with_fp32(nncf, faces_dev, model_store, tmp_path):
    store = ModelStore(tmp_path / "models")
    for name in ("blazeface-full", MODEL):
        shutil.copytree(model_store.folder(name), store.folder(name))
    fp32 = FacePipeline.open(PipelineConfig(model_dir=store.root, device="CPU", embedder=MODEL))
    people = sorted(p for p in faces_dev.iterdir() if p.is_dir())
    calibration = aligned_chips([f for p in people for f in sorted(p.glob("*.png"))[1:3]], fp32)  # 16 faces
    manifest = quantize_embedder(store, MODEL, calibration, source="faces-dev", augment=0)

    base = store.manifest(MODEL)
    assert manifest.name == int8_name(MODEL) and manifest.extra["precision"] == "int8"
    assert manifest.extra["source_digest"] == base.digest and manifest.digest != base.digest
    assert manifest.alignment_template == base.alignment_template and manifest.input_size == base.input_size
    store.read_model(manifest.name)  # verified against its own manifest

    int8 = FacePipeline.open(PipelineConfig(model_dir=store.root, device="CPU", embedder=manifest.name))
    held_out = aligned_chips([sorted(p.glob("*.png"))[0] for p in people], fp32)  # not used to calibrate
    cos = np.sum(fp32.embed(held_out) * int8.embed(held_out), axis=1)
    assert cos.mean() >= 0.98 and cos.min() >= 0.95, cos

    (store.folder(manifest.name) / "model.bin").write_bytes(b"corrupt")
    with pytest.raises(Exception, match="refused"):
        store.read_model(manifest.name)
