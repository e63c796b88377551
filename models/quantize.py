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

from dataclasses import replace

import cv2
import numpy as np
import openvino as ov

from lookout.errors import ModelError
from lookout.log import get_logger
from lookout.model_store.catalog import get_spec
from lookout.model_store.manifest import ModelManifest
from lookout.model_store.store import ModelStore
from lookout.models.install import write_ir

log = get_logger(__name__)
INT8_SUFFIX = "-int8"
MIN_CHIPS = 16


def int8_name(name: str) -> str:
    return name + INT8_SUFFIX


def precision_of(manifest: ModelManifest) -> str:
    return str(manifest.extra.get("precision", "fp32"))


def augment_chips(chips: np.ndarray, copies: int = 3, seed: int = 0) -> np.ndarray:
    """The chips plus ``copies`` jittered versions of each: zoomed in up to 35%, turned up to 8 degrees,
    shifted, brighter or darker, some mirrored.

    Tight ID-photo crops align into chips with black borders; camera faces fill
    the chip with hair and background. Calibrating on the crops alone set
    activation ranges that fit camera faces badly (faces-dev strangers: mean
    cosine to FP32 0.88); with these copies, 0.93, and the crops still 0.99.
    """

    rng = np.random.default_rng(seed)
    h, w = chips.shape[1:3]
    out = [chips]
    for chip in chips:
        for _ in range(copies):
            centre = (w / 2 + rng.uniform(-6, 6), h / 2 + rng.uniform(-6, 6))
            matrix = cv2.getRotationMatrix2D(centre, rng.uniform(-8, 8), rng.uniform(1.0, 1.35))
            x = cv2.warpAffine(chip, matrix, (w, h), borderMode=cv2.BORDER_CONSTANT)
            x = np.clip(x.astype(np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
            out.append((x[:, ::-1] if rng.random() < 0.5 else x)[None])
    return np.ascontiguousarray(np.concatenate(out))


def quantize_embedder(
    store: ModelStore,
    name: str,
    chips: np.ndarray,
    source: str = "",
    preset: str = "mixed",
    fast_bias_correction: bool = True,
    augment: int = 3,
) -> ModelManifest:
    """Quantise embedder ``name`` to INT8 on ``chips`` (N, h, w, 3) RGB uint8 aligned for it; save and return its manifest.

    ``augment``: jittered copies of each chip added to the calibration set (see ``augment_chips``).
    """
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
    if augment:
        chips = augment_chips(chips, augment)
    dataset = nncf.Dataset(list(chips), lambda chip: chip[None])
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    log.info("quantize.start", name=name, chips=len(chips), preset=preset, nncf=nncf.__version__)
    keep_float = pre_post_processing(model)
    quantized = nncf.quantize(
        model,
        dataset,
        preset=presets[preset],
        subset_size=len(chips),
        fast_bias_correction=fast_bias_correction,
        ignored_scope=nncf.IgnoredScope(names=keep_float, validate=False),
    )
    return _save_derived(
        store,
        manifest,
        quantized,
        {
            "derived_from": name,
            "source_digest": manifest.digest,
            "precision": "int8",
            "quantized_with": f"nncf {nncf.__version__}",
            "calibration": {
                "chips": len(chips),
                "augmented_copies": augment,
                "source": source,
                "preset": preset,
                "fast_bias_correction": fast_bias_correction,
                "kept_float": len(keep_float),
            },
        },
    )


def pre_post_processing(model: ov.Model) -> list[str]:
    """Names of the in-model pre- and post-processing ops, kept in float.

    Everything before the first convolution (per-image prewhitening, mean
    subtraction) and after the last convolution or matrix product (the L2
    normalisation): cheap ops whose quantisation only costs accuracy (on
    faces-dev, quantising FaceNet's prewhitening sent one chip's embedding to
    cosine 0.39 against FP32 in some runs).
    """
    ops = list(model.get_ordered_ops())
    kinds = [o.get_type_name() for o in ops]
    heavy = [i for i, k in enumerate(kinds) if k in ("Convolution", "MatMul", "GroupConvolution")]
    if not heavy:
        return []
    skip = {"Constant", "Parameter", "Result"}
    return [
        o.get_friendly_name() for i, o in enumerate(ops) if kinds[i] not in skip and (i < heavy[0] or i > heavy[-1])
    ]


def _save_derived(store: ModelStore, base: ModelManifest, model: ov.Model, extra: dict) -> ModelManifest:
    name = int8_name(base.name)
    folder = store.folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    files = write_ir(model, folder)
    manifest = replace(
        base,
        name=name,
        description=f"{base.description}; INT8 post-training quantised",
        files=files,
        converted_with=ov.get_version(),
        extra={**base.extra, **extra},
    )
    manifest.write(folder)
    log.info("model.ready", name=name, digest=manifest.digest[:16], folder=str(folder))
    return manifest


__all__ = ["int8_name", "precision_of", "quantize_embedder"]
