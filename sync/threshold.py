"""The default decision threshold written into a bundle, and the figures it was chosen from.

The threshold belongs to the embedder (``extra.default_threshold`` in its model
manifest, see docs/models.md): cosine scales differ by model (dlib's crowd near
1). A bundle records the value and the measured basis, so a device uses the
threshold that goes with the model the gallery was built with.

Person score = best cosine over the person's photos ("max"). The mean of a
person's top two photo scores was measured too and separates less (below).
Figures: faces-dev gallery built by ``build_gallery_from_folders`` (8 people, 5
photos each), genuine = the 22 faces of groups.csv against their own person,
impostor = those faces against the 7 other people plus the 7 strangers against
all 8 (210 scores). See docs/gallery.md.
"""

from __future__ import annotations

MEASURED: dict[str, dict] = {
    "dlib-resnet": {
        "set": "faces-dev (22 genuine, 210 impostor person scores)",
        "aggregation": "max over photos",
        "genuine_min": 0.930,
        "genuine_median": 0.955,
        "impostor_max": 0.905,
        "impostor_p99": 0.899,
        "impostor_mean": 0.854,
        "top2_mean": {"genuine_min": 0.916, "impostor_max": 0.902},
        "at_threshold": {"genuine_named": 22, "wrong_names": 0, "strangers_named": 0},
        "rule": "between the highest impostor and the lowest genuine, nearer the genuine side (a false match costs more than a miss)",
    },
    "facenet": {
        "set": "faces-dev (22 genuine, 210 impostor person scores)",
        "aggregation": "max over photos",
        "genuine_min": 0.474,
        "genuine_median": 0.719,
        "impostor_max": 0.572,
        "impostor_p99": 0.521,
        "impostor_mean": 0.289,
        "top2_mean": {"genuine_min": 0.439, "impostor_max": 0.516},
        "at_threshold": {"genuine_named": 19, "wrong_names": 0, "strangers_named": 0},
        "rule": "above the highest impostor with a margin (a false match costs more than a miss)",
    },
}

FALLBACK_THRESHOLD = 0.60


def default_threshold(embedder) -> tuple[float, dict]:
    """(threshold, basis) for a FaceEmbedder (or anything with ``.name`` and ``.manifest.extra``)."""
    extra = getattr(getattr(embedder, "manifest", None), "extra", None) or {}
    value = extra.get("default_threshold")
    basis = dict(MEASURED.get(getattr(embedder, "name", ""), {}))
    if value is None:
        basis["note"] = "model manifest gives no default_threshold: fallback used, calibrate before deployment"
        value = FALLBACK_THRESHOLD
    basis["source"] = "model manifest extra.default_threshold"
    return float(value), basis
