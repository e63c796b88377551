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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookout.errors import InputError
from lookout.evaluation.enrolment import UNREADABLE, Capture
from lookout.face.image_io import read_image
from lookout.face.pipeline import FacePipeline
from lookout.face.subject import NO_FACE, Box, SubjectRule
from lookout.face.types import Face

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
GROUPS_FILE = "groups.csv"
HELD_OUT, GROUP_PHOTO, STRANGER = "held-out photo", "group photo", "stranger photo"


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
    not_enrolled: list[str] = field(default_factory=list)  # gallery people none of whose photos enrolled (FTE)
    not_enrolled_probes: int = 0  # their probes: misses, left out of the open-set figures and counted here

    @property
    def acquired(self) -> np.ndarray:
        return np.asarray([c.ok for c in self.acquisition], bool)

    @property
    def truth(self) -> np.ndarray:
        index = {p: i for i, p in enumerate(self.persons)}
        return np.asarray([index.get(p.person, -1) if p.person else -1 for p in self.probes], np.int64)


# A probe is a search, not an enrolment: without a labelled box, its largest face is the one searched.
PROBE_RULE = SubjectRule(several_faces="largest")


class PhotoCapture:
    """Detects once per image, picks the subject (the enrolment rule for gallery photos, the largest
    face for probes), gates on quality, and embeds in batches: the gallery build's steps, measured."""

    def __init__(self, pipeline: FacePipeline, quality_gate: bool, enrolment_rule: SubjectRule | None = None) -> None:
        self.pipeline = pipeline
        self.quality_gate = quality_gate
        self.enrolment_rule = enrolment_rule or SubjectRule()
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
        self, image: Path, person: str, item: str, box: Box | None = None, enrolment: bool = False
    ) -> tuple[Capture, np.ndarray | None]:
        pixels, faces = self.faces(image)
        if pixels is None:
            return Capture(item, person, (UNREADABLE,)), None
        rule = self.enrolment_rule if enrolment else PROBE_RULE
        subject = self.pipeline.subject(pixels, box, rule, faces=faces)
        if subject.face is None or subject.chip is None or subject.quality is None:
            return Capture(item, person, (subject.reason or NO_FACE,)), None
        refused = rule.refusals(subject.quality.reasons) if enrolment else subject.quality.reasons
        if self.quality_gate and refused:
            return Capture(item, person, refused), None
        return Capture(item, person), subject.chip

    def embed(self, chips: Sequence[np.ndarray | None]) -> np.ndarray:
        """One vector per chip; a zero row where there is no chip (a failed capture)."""
        out = np.zeros((len(chips), self.pipeline.embedder.dim), np.float32)
        ok = [(i, c) for i, c in enumerate(chips) if c is not None]
        if ok:
            out[[i for i, _ in ok]] = self.pipeline.embed(np.stack([c for _, c in ok]))
        return out


def embed_protocol(
    protocol: Protocol, pipeline: FacePipeline, quality_gate: bool = True, enrolment_rule: SubjectRule | None = None
) -> Embedded:
    """Enrol the gallery and search nothing yet: every photo and labelled face turned into a vector.
    Gallery photos go through the build's enrolment rule (``enrolment_rule``, default: the build's)."""
    worker = PhotoCapture(pipeline, quality_gate, enrolment_rule)
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
    # N and rank-1 are over people actually enrolled; the others are failures to enrol, their probes misses
    enrolled = sorted({persons[i] for i in owner})
    not_enrolled = [p for p in persons if p not in set(enrolled)]
    reindex = {persons.index(p): j for j, p in enumerate(enrolled)}
    probes = [p for p in protocol.probes if p.person not in set(not_enrolled)]
    acquisition, probe_chips = [], []
    for probe in probes:
        cap, chip = worker.capture(probe.image, probe.subject, probe.item, box=probe.box)
        acquisition.append(cap)
        probe_chips.append(chip)
    emb = pipeline.embedder
    return Embedded(
        enrolled,
        gallery,
        np.asarray([reindex[i] for i in owner], np.int64),
        enrolment,
        probes,
        worker.embed(probe_chips),
        acquisition,
        emb.name,
        emb.digest,
        protocol.description,
        not_enrolled,
        len(protocol.probes) - len(probes),
    )


def aligned_chips(images: list[Path], pipeline: FacePipeline) -> np.ndarray:
    """The largest face of each image, aligned for the pipeline's embedder (for quantisation)."""
    worker = PhotoCapture(pipeline, quality_gate=False)
    chips = [c for c in (worker.capture(p, "", p.name)[1] for p in images) if c is not None]
    if not chips:
        raise InputError("calibration images", "no face found in any of them")
    return np.stack(chips)


def image_files(folder: Path) -> list[Path]:
    """Every image under ``folder``, recursively, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
