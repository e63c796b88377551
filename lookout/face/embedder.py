"""Face embedders: aligned RGB chips in, L2-normalised float32 vectors out.

Any model whose IR follows the embedder contract (input "chips" [N,H,W,3]
uint8 RGB, output "embedding" [N,D] unit vectors; see lookout.models.convert)
works here unchanged; the alignment template and chip size come from its
manifest, so a new embedder is a new registry entry, not new code.
"""

from __future__ import annotations

import numpy as np
import openvino as ov

from lookout.face.engine import InferenceEngine
from lookout.model_store.manifest import ModelManifest


class FaceEmbedder:
    def __init__(
        self,
        model: ov.Model,
        manifest: ModelManifest,
        engine: InferenceEngine,
        hint: str = "LATENCY",
        max_batch: int = 16,
    ) -> None:
        self.manifest = manifest
        self.name = manifest.name
        self.digest = manifest.digest
        self.dim = manifest.output_dim
        self.chip_size = (manifest.input_size[0], manifest.input_size[1])
        self.template = np.asarray(manifest.alignment_template, np.float32)
        self.max_batch = max_batch
        self.compiled = engine.compile(model, hint)
        self._request = self.compiled.create_infer_request()

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, h, w, 3) uint8 RGB chips -> (N, dim) unit vectors. Batches of at most ``max_batch``."""
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        parts = [self._infer(chips[i : i + self.max_batch]) for i in range(0, len(chips), self.max_batch)]
        return np.concatenate(parts)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self._request.infer({0: np.ascontiguousarray(batch)})
        return self._request.get_output_tensor(0).data.copy()
