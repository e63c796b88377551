"""BlazeFace SSD anchors, generated as MediaPipe's SsdAnchorsCalculator does.

Full range: one 48x48 layer (stride 4), one anchor per cell: 2304 anchors.
Short range: strides 8, 16, 16, 16 with two anchors per cell per layer; layers
of equal stride share a grid: 16x16x2 + 8x8x6 = 896 anchors. With a fixed
anchor size every anchor is 1x1 in normalised units, so only centres matter.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

import numpy as np

ANCHOR_LAYOUTS: dict[str, dict[str, Any]] = {
    "full_range": {"input": 192, "strides": (4,), "per_layer": 1},
    "short_range": {"input": 128, "strides": (8, 16, 16, 16), "per_layer": 2},
}


def anchor_centres(layout: str) -> np.ndarray:
    """Return (N, 2) float32 anchor centres (x, y) in [0, 1], in the model's output order."""
    spec = ANCHOR_LAYOUTS[layout]
    centres = []
    for stride, layers in groupby(spec["strides"]):
        per_cell = spec["per_layer"] * len(list(layers))
        cells = int(np.ceil(spec["input"] / stride))
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)
