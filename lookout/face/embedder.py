"""Face embedders: aligned RGB chips in, L2-normalised float32 vectors out.

Any model whose IR follows the embedder contract (input "chips" [N,H,W,3]
uint8 RGB, output "embedding" [N,D] unit vectors; see lookout.models.convert)
works here unchanged; the alignment template and chip size come from its
manifest, so a new embedder is a new catalog entry, not new code.
"""

from __future__ import annotations

import numpy as np
import openvino as ov

from lookout.face.engine import InferenceEngine
from lookout.face.stage import Outputs, Stage
from lookout.model_store.manifest import ModelManifest


class FaceEmbedder(Stage[np.ndarray, np.ndarray, int]):
    """An embedder as a stage: a stack of chips in, batches of at most ``max_batch`` per request."""

    def __init__(
        self,
        model: ov.Model,
        manifest: ModelManifest,
        engine: InferenceEngine,
        hint: str = "LATENCY",
        max_batch: int = 16,
        jobs: int = 2,
        precision: str = "fp32",
    ) -> None:
        """``manifest`` is the model's identity (digest, template); ``model`` the IR run at ``precision``
        (for int8, the quantised IR standing in for the manifest's model)."""
        super().__init__(engine.compile(model, hint, precision), jobs)
        self.precision = precision
        self.manifest = manifest
        self.name = manifest.name
        self.digest = manifest.digest
        self.dim = manifest.output_dim
        self.chip_size = (manifest.input_size[0], manifest.input_size[1])
        self.template = np.asarray(manifest.alignment_template, np.float32)
        self.max_batch = max_batch

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, h, w, 3) uint8 RGB chips -> (N, dim) unit vectors."""
        return self.run(chips)

    def prepare(self, item: np.ndarray) -> list[tuple[np.ndarray, int]]:
        return [(item[i : i + self.max_batch], i) for i in range(0, len(item), self.max_batch)]

    def decode(self, outputs: list[Outputs], contexts: list[int]) -> np.ndarray:
        if not outputs:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate([out[0] for out in outputs]).astype(np.float32, copy=False)
