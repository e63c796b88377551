"""The face pipeline: detect, align, assess quality, embed. The one composition of the face
models, used by the gallery build, search, evaluation and the device alike.

Two forms over the same stages (lookout.face.stage):

- photos, synchronously: ``detect``, ``align``, ``assess``, ``embed``; ``analyze`` does all four
  for every face of an image; ``subject`` finds, aligns and assesses the one face of a photo
  that the enrolment rule (lookout.face.subject) picks.
- a stream, asynchronously: ``submit_detection``/``collect_detection`` and
  ``submit_embedding``/``collect_embedding``, so that the device detects frame t+1 while
  frame t's faces are embedded.

A third model (one refining the keypoints before alignment, say) would be one more stage,
run between detection and alignment here, and so everywhere at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookout.face.align import align_faces
from lookout.face.detector import DetectorConfig, FaceDetector, Letterbox
from lookout.face.embedder import FaceEmbedder
from lookout.face.engine import InferenceEngine
from lookout.face.quality import QualityConfig, assess
from lookout.face.stage import Pending
from lookout.face.subject import Box, SubjectRule, choose_subject
from lookout.face.types import AnalyzedFace, Face, Quality
from lookout.log import get_logger
from lookout.model_store.catalog import DEFAULT_DETECTOR, DEFAULT_EMBEDDER
from lookout.model_store.precision import device_identity, resolve
from lookout.model_store.store import ModelStore

log = get_logger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    model_dir: Path | None = None
    device: str = "AUTO"
    detector: str = DEFAULT_DETECTOR
    embedder: str = DEFAULT_EMBEDDER
    detection: DetectorConfig = field(default_factory=DetectorConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    embedder_hint: str = "LATENCY"  # THROUGHPUT for bulk enrolment
    embed_batch: int = 16  # faces per embedding request
    precision: str = "auto"  # the embedder's: auto (measured choice, else fp32), fp32, bf16, int8


@dataclass(frozen=True)
class SubjectFace:
    """A photo's subject, aligned and assessed but not embedded (callers embed in batches);
    or, with ``face`` None, the enrolment rule's reason why the photo has none."""

    face: Face | None
    chip: np.ndarray | None = None
    quality: Quality | None = None
    reason: str | None = None
    detail: str = ""


class FacePipeline:
    def __init__(
        self, detector: FaceDetector, embedder: FaceEmbedder, quality: QualityConfig, precision_note: str = ""
    ) -> None:
        """``precision_note``: why the embedder runs at its precision (the device logs it at start)."""
        self.detector = detector
        self.embedder = embedder
        self.quality_config = quality
        self.precision_note = precision_note

    @classmethod
    def open(cls, config: PipelineConfig | None = None) -> FacePipeline:
        """Load and compile both models from the model store (verifying their digests)."""
        config = config or PipelineConfig()
        store = ModelStore(config.model_dir)
        engine = InferenceEngine(config.device)
        det_model, det_manifest = store.read_model(config.detector)
        detector = FaceDetector(det_model, det_manifest, engine, config.detection)
        del det_model  # compiled: the IR's weights are no longer needed in memory
        emb = resolve(
            store, config.embedder, config.precision, config.device, device_identity(engine.core, config.device)
        )
        log.debug("model.precision", model=config.embedder, precision=emb.precision, why=emb.why)
        embedder = FaceEmbedder(
            emb.model,
            emb.manifest,
            engine,
            hint=config.embedder_hint,
            max_batch=config.embed_batch,
            precision=emb.precision,
        )
        return cls(detector, embedder, config.quality, emb.why)

    # -- the steps ---------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detector.detect(image)

    def align(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        return align_faces(image, faces, self.embedder.template, self.embedder.chip_size)

    def assess(self, face: Face, chip: np.ndarray) -> Quality:
        return assess(face, chip, self.quality_config)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return self.embedder.embed(chips)

    def empty_vectors(self) -> np.ndarray:
        return np.zeros((0, self.embedder.dim), np.float32)

    # -- compositions for photos ---------------------------------------------------------------
    def analyze(self, image: np.ndarray, faces: list[Face] | None = None, embed: str = "all") -> list[AnalyzedFace]:
        """Detect (unless ``faces`` given), align, assess, and embed faces.

        ``embed``: "all" embeds every face, "ok" only faces passing the quality
        gates, "none" skips embedding.
        """
        faces = self.detect(image) if faces is None else faces
        chips = self.align(image, faces)
        qualities = [self.assess(f, chip) for f, chip in zip(faces, chips)]
        wanted = [i for i, q in enumerate(qualities) if embed == "all" or (embed == "ok" and q.ok)]
        vectors = self.embed(chips[wanted]) if wanted else self.empty_vectors()
        by_index = dict(zip(wanted, vectors))
        return [AnalyzedFace(f, q, by_index.get(i)) for i, (f, q) in enumerate(zip(faces, qualities))]

    def subject(
        self,
        image: np.ndarray,
        box: Box | None = None,
        rule: SubjectRule | None = None,
        faces: list[Face] | None = None,
    ) -> SubjectFace:
        """The face the enrolment rule picks (``faces``: already detected in ``image``), aligned and assessed."""
        choice = choose_subject(self.detect(image) if faces is None else faces, box, rule)
        if choice.face is None:
            return SubjectFace(None, reason=choice.reason, detail=choice.detail)
        chip = self.align(image, [choice.face])[0]
        return SubjectFace(choice.face, chip, self.assess(choice.face, chip))

    # -- the asynchronous form, for a stream of frames -------------------------------------------
    def submit_detection(self, image: np.ndarray) -> Pending[Letterbox]:
        return self.detector.submit(image)

    def collect_detection(self, pending: Pending[Letterbox]) -> list[Face]:
        return self.detector.collect(pending)

    def submit_embedding(self, chips: np.ndarray) -> Pending[int]:
        return self.embedder.submit(chips)

    def collect_embedding(self, pending: Pending[int]) -> np.ndarray:
        return self.embedder.collect(pending)
