"""Evaluation data: which photos are enrolled, which are searched, and who is in them.

The folder protocol (faces-dev's layout, and any folder laid out like it):

- ``<root>/<person>/*.{png,jpg,...}``: identity folders. All but one photo per
  person are enrolled (the gallery); the held-out photo (``holdout``: index in
  sorted order, default the first) is a *mated probe*.
- ``<root>/*.{jpg,png,...}`` not named in ``groups.csv``: one face each of a
  person who is not enrolled: *non-mated probes* (faces-dev's seven strangers).
- ``<root>/groups.csv`` (``image,x1,y1,x2,y2,identity``): labelled faces in group
  photos, searched as probes too; mated when the identity is enrolled, else
  non-mated.

Optional labels for per-group figures: a CSV with an ``identity`` or an
``image`` column and any label columns (``--labels``); every probe also
carries the built-in label ``capture`` (held-out photo, group photo,
stranger photo).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookout.errors import InputError
from lookout.evaluation.enrolment import MULTIPLE_FACES, NO_FACE, UNREADABLE, Capture
from lookout.face.image_io import read_image
from lookout.face.pipeline import FacePipeline
from lookout.face.quality import assess
from lookout.face.types import Face

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
GROUPS_FILE = "groups.csv"
HELD_OUT, GROUP_PHOTO, STRANGER = "held-out photo", "group photo", "stranger photo"
MIN_BOX_IOU = 0.3  # a detection counts as a labelled face when it overlaps the label's box this much
DOMINANT_AREA = 2.0  # an enrolment photo with several faces is usable when the largest is this much larger


@dataclass(frozen=True)
class ProbeSpec:
    image: Path
    person: str | None  # the enrolled identity, None for someone not enrolled
    subject: str  # who it is, enrolled or not (confidence intervals resample these)
    source: str
    box: tuple[float, float, float, float] | None = None
    track: str | None = None  # probes of one video track share this
    labels: dict = field(default_factory=dict)

    @property
    def item(self) -> str:
        if self.box is None:
            return self.image.name
        return f"{self.image.name}#{','.join(f'{v:.0f}' for v in self.box)}"


@dataclass
class Protocol:
    root: Path
    gallery: dict[str, list[Path]]
    probes: list[ProbeSpec]
    description: str


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_labels(path: Path) -> tuple[str, dict[str, dict[str, str]]]:
    """(key column, {key: {column: value}}) from a labels CSV keyed by ``identity`` or ``image``."""
    try:
        rows = list(csv.DictReader(Path(path).read_text().splitlines()))
    except OSError as err:
        raise InputError(str(path), err.strerror or str(err)) from None
    if not rows:
        raise InputError(str(path), "no rows")
    key = next((k for k in ("identity", "image") if k in rows[0]), None)
    if key is None:
        raise InputError(str(path), "labels need an 'identity' or an 'image' column")
    return key, {r[key].strip(): {k: (v or "").strip() for k, v in r.items() if k != key} for r in rows}


def folder_protocol(root: Path, holdout: int = 0, labels: Path | None = None) -> Protocol:
    root = Path(root)
    if not root.is_dir():
        raise InputError(str(root), "no such folder")
    gallery: dict[str, list[Path]] = {}
    probes: list[ProbeSpec] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        photos = _images(folder)
        if len(photos) < 2:
            raise InputError(str(folder), f"needs at least 2 photos to hold one out, has {len(photos)}")
        held = photos[holdout % len(photos)]
        gallery[folder.name] = [p for p in photos if p != held]
        probes.append(ProbeSpec(held, folder.name, folder.name, HELD_OUT))
    if not gallery:
        raise InputError(str(root), "no identity folders (one folder of photos per person)")
    group_images: set[str] = set()
    groups_csv = root / GROUPS_FILE
    if groups_csv.exists():
        for line, row in enumerate(csv.DictReader(groups_csv.read_text().splitlines()), start=2):
            try:
                box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
                who = row["identity"].strip()
                image = root / row["image"].strip()
            except (KeyError, ValueError, AttributeError) as err:
                raise InputError(f"{groups_csv}:{line}", f"needs image,x1,y1,x2,y2,identity ({err})") from None
            group_images.add(image.name)
            probes.append(ProbeSpec(image, who if who in gallery else None, who, GROUP_PHOTO, box))  # type: ignore[arg-type]
    for photo in _images(root):
        if photo.name not in group_images:
            probes.append(ProbeSpec(photo, None, f"stranger:{photo.stem}", STRANGER))
    if labels is not None:
        key, table = read_labels(labels)
        probes = [_labelled(p, key, table) for p in probes]
    probes = [
        ProbeSpec(p.image, p.person, p.subject, p.source, p.box, p.track, {"capture": p.source, **p.labels})
        for p in probes
    ]
    n_mated = sum(p.person is not None for p in probes)
    description = (
        f"{len(gallery)} people enrolled from {sum(map(len, gallery.values()))} photos "
        f"(one photo per person held out); {n_mated} mated probes, "
        f"{len(probes) - n_mated} non-mated probes"
    )
    return Protocol(root, gallery, probes, description)


def _labelled(probe: ProbeSpec, key: str, table: dict[str, dict[str, str]]) -> ProbeSpec:
    ref = probe.subject if key == "identity" else probe.image.name
    extra = {k: v for k, v in table.get(ref, {}).items() if v}
    return ProbeSpec(
        probe.image, probe.person, probe.subject, probe.source, probe.box, probe.track, {**probe.labels, **extra}
    )


# -- embedding ---------------------------------------------------------------------------


@dataclass
class Embedded:
    """A protocol turned into vectors by one pipeline."""

    persons: list[str]
    gallery_vectors: np.ndarray  # (M, D)
    gallery_owner: np.ndarray  # (M,) index into persons
    enrolment: list[Capture]
    probes: list[ProbeSpec]
    probe_vectors: np.ndarray  # (P, D); zero rows where acquisition failed
    acquisition: list[Capture]
    model_name: str
    model_digest: str
    description: str = ""

    @property
    def acquired(self) -> np.ndarray:
        return np.asarray([c.ok for c in self.acquisition], bool)

    @property
    def truth(self) -> np.ndarray:
        index = {p: i for i, p in enumerate(self.persons)}
        return np.asarray([index.get(p.person, -1) if p.person else -1 for p in self.probes], np.int64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _pick_whole_image(faces: list[Face], enrolment: bool) -> tuple[Face | None, str | None]:
    if not faces:
        return None, NO_FACE
    by_area = sorted(faces, key=lambda f: f.width * float(f.box[3] - f.box[1]), reverse=True)
    if enrolment and len(by_area) > 1:
        a0 = by_area[0].width * float(by_area[0].box[3] - by_area[0].box[1])
        a1 = by_area[1].width * float(by_area[1].box[3] - by_area[1].box[1])
        if a0 < DOMINANT_AREA * a1:
            return None, MULTIPLE_FACES
    return by_area[0], None


def _pick_box(faces: list[Face], box: tuple[float, ...]) -> tuple[Face | None, str | None]:
    target = np.asarray(box, np.float64)
    best = max(faces, key=lambda f: iou(f.box, target), default=None)
    if best is None or iou(best.box, target) < MIN_BOX_IOU:
        return None, NO_FACE
    return best, None


class _Embedder:
    """Detects once per image, aligns, gates on quality, embeds in batches."""

    def __init__(self, pipeline: FacePipeline, quality_gate: bool) -> None:
        self.pipeline = pipeline
        self.quality_gate = quality_gate
        self._faces: dict[Path, tuple[np.ndarray | None, list[Face]]] = {}

    def faces(self, image: Path) -> tuple[np.ndarray | None, list[Face]]:
        if image not in self._faces:
            try:
                pixels = read_image(image)
            except InputError:
                self._faces[image] = (None, [])
            else:
                self._faces[image] = (pixels, self.pipeline.detect(pixels))
        return self._faces[image]

    def capture(
        self, image: Path, person: str, item: str, box=None, enrolment: bool = False
    ) -> tuple[Capture, np.ndarray | None]:
        pixels, faces = self.faces(image)
        if pixels is None:
            return Capture(item, person, (UNREADABLE,)), None
        face, reason = _pick_box(faces, box) if box is not None else _pick_whole_image(faces, enrolment)
        if face is None:
            return Capture(item, person, (reason,)), None
        chip = self.pipeline.align(pixels, [face])
        quality = assess(face, chip[0], self.pipeline.quality_config)
        if self.quality_gate and not quality.ok:
            return Capture(item, person, quality.reasons), None
        return Capture(item, person), chip[0]

    def embed(self, chips: list[np.ndarray | None]) -> np.ndarray:
        dim = self.pipeline.embedder.dim
        out = np.zeros((len(chips), dim), np.float32)
        ok = [i for i, c in enumerate(chips) if c is not None]
        if ok:
            out[ok] = self.pipeline.embed(np.stack([chips[i] for i in ok]))
        return out


def embed_protocol(protocol: Protocol, pipeline: FacePipeline, quality_gate: bool = True) -> Embedded:
    """Enrol the gallery and search nothing yet: every photo and labelled face turned into a vector."""
    worker = _Embedder(pipeline, quality_gate)
    persons = sorted(protocol.gallery)
    enrolment, chips, owner = [], [], []
    for i, person in enumerate(persons):
        for photo in protocol.gallery[person]:
            cap, chip = worker.capture(photo, person, photo.name, enrolment=True)
            enrolment.append(cap)
            if chip is not None:
                chips.append(chip)
                owner.append(i)
    gallery = worker.embed(chips) if chips else np.zeros((0, pipeline.embedder.dim), np.float32)
    acquisition, probe_chips = [], []
    for probe in protocol.probes:
        cap, chip = worker.capture(probe.image, probe.subject, probe.item, box=probe.box)
        acquisition.append(cap)
        probe_chips.append(chip)
    emb = pipeline.embedder
    return Embedded(
        persons,
        gallery,
        np.asarray(owner, np.int64),
        enrolment,
        list(protocol.probes),
        worker.embed(probe_chips),
        acquisition,
        emb.name,
        emb.digest,
        protocol.description,
    )


def aligned_chips(images: list[Path], pipeline: FacePipeline) -> np.ndarray:
    """The largest face of each image, aligned for the pipeline's embedder (for quantisation)."""
    worker = _Embedder(pipeline, quality_gate=False)
    chips = [c for c in (worker.capture(p, "", p.name)[1] for p in images) if c is not None]
    if not chips:
        raise InputError("calibration images", "no face found in any of them")
    return np.stack(chips)


def image_files(folder: Path) -> list[Path]:
    """Every image under ``folder``, recursively, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
