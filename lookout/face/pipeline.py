"""The face pipeline: detect, align, assess quality, embed. One implementation for
the gallery builder, the device and search alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookout.face.align import align_faces
from lookout.face.detector import DetectorConfig, FaceDetector
from lookout.face.embedder import FaceEmbedder
from lookout.face.engine import InferenceEngine
from lookout.face.quality import QualityConfig, assess
from lookout.face.types import AnalyzedFace, Face
from lookout.model_store.catalog import DEFAULT_DETECTOR, DEFAULT_EMBEDDER
from lookout.model_store.store import ModelStore


@dataclass(frozen=True)
class PipelineConfig:
    model_dir: Path | None = None
    device: str = "AUTO"
    detector: str = DEFAULT_DETECTOR
    embedder: str = DEFAULT_EMBEDDER
    detection: DetectorConfig = field(default_factory=DetectorConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    embedder_hint: str = "LATENCY"  # THROUGHPUT for bulk enrolment


class FacePipeline:
    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder, quality: QualityConfig) -> None:
        self.detector = detector
        self.embedder = embedder
        self.quality_config = quality

    @classmethod
    def open(cls, config: PipelineConfig | None = None) -> FacePipeline:
        """Load and compile both models from the model store (verifying their digests)."""
        config = config or PipelineConfig()
        store = ModelStore(config.model_dir)
        engine = InferenceEngine(config.device)
        det_model, det_manifest = store.read_model(config.detector)
        emb_model, emb_manifest = store.read_model(config.embedder)
        return cls(
            FaceDetector(det_model, det_manifest, engine, config.detection),
            FaceEmbedder(emb_model, emb_manifest, engine, hint=config.embedder_hint),
            config.quality,
        )

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detector.detect(image)

    def align(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        return align_faces(image, faces, self.embedder.template, self.embedder.chip_size)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return self.embedder.embed(chips)

    def analyze(self, image: np.ndarray, faces: list[Face] | None = None, embed: str = "all") -> list[AnalyzedFace]:
        """Detect (unless ``faces`` given), align, assess, and embed faces.

        ``embed``: "all" embeds every face, "ok" only faces passing the quality
        gates, "none" skips embedding.
        """
        faces = self.detect(image) if faces is None else faces
        chips = self.align(image, faces)
        qualities = [assess(f, chip, self.quality_config) for f, chip in zip(faces, chips)]
        wanted = [i for i, q in enumerate(qualities) if embed == "all" or (embed == "ok" and q.ok)]
        vectors = self.embed(chips[wanted]) if wanted else np.zeros((0, self.embedder.dim), np.float32)
        by_index = dict(zip(wanted, vectors))
        return [AnalyzedFace(f, q, by_index.get(i)) for i, (f, q) in enumerate(zip(faces, qualities))]
