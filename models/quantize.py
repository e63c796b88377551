"""Post-training INT8 quantisation of an embedder with NNCF, calibrated on aligned face chips.

The result is a model of its own in the store, ``<name>-int8``, beside the FP32
one: same input contract (RGB uint8 chips) and output (unit vectors), same
alignment template, its own IR files, manifest and digest (so a gallery built
with FP32 embeddings is never searched with INT8 ones without a rebuild).
Its manifest's ``extra`` says what it was derived from and how:
``derived_from``, ``source_digest``, ``precision``, ``quantized_with`` and
``calibration`` (how many chips, from where).

NNCF is needed only to make the INT8 model, not to run it (`pip install nncf`).
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import openvino as ov

from lookout.digest import sha256_file
from lookout.errors import ModelError
from lookout.log import get_logger
from lookout.models.manifest import ModelManifest
from lookout.models.registry import ALL_MODELS, get_spec
from lookout.models.store import IR_FILES, ModelStore

log = get_logger(__name__)
INT8_SUFFIX = "-int8"
MIN_CHIPS = 16


def int8_name(name: str) -> str:
    return name + INT8_SUFFIX


def precision_of(manifest: ModelManifest) -> str:
    return str(manifest.extra.get("precision", "fp32"))


def quantize_embedder(store: ModelStore, name: str, chips: np.ndarray, source: str = "",
                      preset: str = "mixed", fast_bias_correction: bool = True) -> ModelManifest:
    """Quantise embedder ``name`` to INT8 on ``chips`` (N, h, w, 3) RGB uint8 aligned for it; save and return its manifest."""
    try:
        import nncf
    except ImportError:
        raise ModelError("INT8 quantisation needs NNCF: pip install nncf") from None
    spec = get_spec(name)
    if spec.kind != "embedder":
        raise ModelError(f"{name} is a {spec.kind}; only embedders are quantised (detector INT8 did not pay, see docs)")
    model, manifest = store.read_model(name)
    chips = np.ascontiguousarray(chips, np.uint8)
    want = (manifest.input_size[1], manifest.input_size[0], 3)
    if chips.ndim != 4 or chips.shape[1:] != want:
        raise ModelError(f"calibration chips must be (N, {want[0]}, {want[1]}, 3) for {name}, got {chips.shape}")
    if len(chips) < MIN_CHIPS:
        raise ModelError(f"need at least {MIN_CHIPS} aligned faces to calibrate INT8, got {len(chips)}")
    dataset = nncf.Dataset(list(chips), lambda chip: chip[None])
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    log.info("quantize.start", name=name, chips=len(chips), preset=preset, nncf=nncf.__version__)
    quantized = nncf.quantize(model, dataset, preset=presets[preset], subset_size=len(chips),
                              fast_bias_correction=fast_bias_correction)
    return _save_derived(store, manifest, quantized, {
        "derived_from": name, "source_digest": manifest.digest, "precision": "int8",
        "quantized_with": f"nncf {nncf.__version__}",
        "calibration": {"chips": int(len(chips)), "source": source, "preset": preset,
                        "fast_bias_correction": fast_bias_correction},
    })


def _save_derived(store: ModelStore, base: ModelManifest, model: ov.Model, extra: dict) -> ModelManifest:
    name = int8_name(base.name)
    folder = store.folder(name)
    staging = folder / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
    files = {f: sha256_file(staging / f) for f in IR_FILES}
    manifest = replace(base, name=name, description=f"{base.description}; INT8 post-training quantised",
                       files=files, converted_with=ov.get_version(), extra={**base.extra, **extra})
    for f in IR_FILES:
        (staging / f).replace(folder / f)
    manifest.write(folder)
    shutil.rmtree(staging)
    log.info("model.ready", name=name, digest=manifest.digest[:16], folder=str(folder))
    return manifest


def read_any_model(store: ModelStore, name: str) -> tuple[ov.Model, ModelManifest]:
    """A registry model through the store, or a derived one (``<name>-int8``) from its folder, verified alike."""
    if name in ALL_MODELS:
        return store.read_model(name)
    folder = store.folder(name)
    manifest = ModelManifest.read(folder)
    base = manifest.extra.get("derived_from")
    if base not in ALL_MODELS:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(ALL_MODELS)} and their {INT8_SUFFIX} versions "
                         f"(`lookout quantize --model NAME`)")
    for file_name, expected in manifest.files.items():
        path = folder / file_name
        if not path.exists() or sha256_file(path) != expected:
            raise ModelError(f"model {name} refused: {path} missing or differs from its manifest")
    return ov.Core().read_model(folder / "model.xml", folder / "model.bin"), manifest


def derived_models(store: ModelStore) -> list[str]:
    """Names of the derived (quantised) models present in the store."""
    if not store.root.is_dir():
        return []
    return sorted(p.name for p in store.root.iterdir()
                  if p.name.endswith(INT8_SUFFIX) and (p / "manifest.json").exists())


def open_pipeline(config):
    """``FacePipeline.open`` that also accepts derived models (``facenet-int8``) for either model."""
    from lookout.face.detector import FaceDetector
    from lookout.face.embedder import FaceEmbedder
    from lookout.face.engine import InferenceEngine
    from lookout.face.pipeline import FacePipeline

    store = ModelStore(config.model_dir)
    engine = InferenceEngine(config.device)
    det_model, det_manifest = read_any_model(store, config.detector)
    emb_model, emb_manifest = read_any_model(store, config.embedder)
    return FacePipeline(FaceDetector(det_model, det_manifest, engine, config.detection),
                        FaceEmbedder(emb_model, emb_manifest, engine, hint=config.embedder_hint),
                        config.quality)


__all__ = ["quantize_embedder", "read_any_model", "open_pipeline", "int8_name", "precision_of", "derived_models"]
