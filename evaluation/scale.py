"""Open-set accuracy at gallery scale (`lookout bench accuracy`): the figures docs/evaluation.md quotes.

Data: one folder of photos per person (faces-scale's layout). Every face of
every photo is detected and embedded once per embedder and cached (``--cache``,
an .npz per embedder digest and data folder: evaluation data, never shipped).

Protocol, per random split: a share of the people are strangers (never
enrolled; every photo of theirs is a non-mated probe), the others enrol ``k``
random photos through the product's enrolment rule (lookout.face.subject), the
rest of their photos are mated probes. Every face of a probe photo is searched;
the face with the best top score decides (a bystander can raise a false alert).
A mated probe is a miss unless its person comes first at or above the
threshold; people who failed to enrol count as misses.

Figures per embedder: rank-1; FTE; the threshold ``gallery build`` would pick
for each split's gallery (lookout.gallery.threshold) with the FPIR and FNIR measured at it;
the threshold that measured FPIR meets the target on the strangers and the FNIR
there; the FMR from every different-person pair of subject faces; and, for a
stated gallery size N, the threshold the build rule picks, the FPIR extrapolated
from this data's own FMR at it (1 - (1 - FMR)^photos) and the FNIR measured at it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lookout.errors import InputError
from lookout.face.image_io import read_image
from lookout.face.pipeline import FacePipeline
from lookout.face.quality import assess
from lookout.face.subject import SubjectRule, choose_subject
from lookout.gallery.threshold import choose_threshold
from lookout.log import get_logger

log = get_logger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
# faces-scale labels left out by default: three pairs that are one person under two CelebA labels (same
# photo shoot, same face) and a cluster whose labels visibly mix several women (docs/evaluation.md).
FACES_SCALE_NOISY = (
    "id7312", "id7314", "id7317", "id7319", "id7320", "id7392", "id7393", "id7433", "id7450",
)  # fmt: skip


@dataclass
class FaceSet:
    """Every detected face of a folder-per-person set, embedded by one embedder."""

    people: list[str]
    photo_person: np.ndarray  # (photos,) person index
    face_photo: np.ndarray  # (faces,) photo index
    subject: np.ndarray  # (photos,) index of the photo's enrolment face, -1 if it fails to enrol
    vectors: np.ndarray  # (faces, D)

    def faces_of(self, photo: int) -> np.ndarray:
        return np.flatnonzero(self.face_photo == photo)


def _photos(root: Path, exclude: frozenset[str] = frozenset()) -> list[tuple[str, Path]]:
    people = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in exclude)
    if not people:
        raise InputError(str(root), "no identity folders (one folder of photos per person)")
    return [(p.name, f) for p in people for f in sorted(p.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]


def embed_set(
    root: Path,
    pipeline: FacePipeline,
    cache: Path | None,
    progress: Callable[[], None],
    exclude: frozenset[str] = frozenset(),
    rule: SubjectRule | None = None,
) -> FaceSet:
    """Detect and embed every face once (cached by embedder digest, enrolment rule and the data's file list)."""
    rule = rule or SubjectRule()
    photos = _photos(root, exclude)
    identity = [pipeline.embedder.digest, asdict(rule), [str(f) for _, f in photos]]
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
    path = cache / f"faces-{pipeline.embedder.name}-{key[:16]}.npz" if cache else None
    people = sorted({p for p, _ in photos})
    if path is not None and path.is_file():
        doc = np.load(path)
        return FaceSet(people, doc["photo_person"], doc["face_photo"], doc["subject"], doc["vectors"])
    face_photo: list[int] = []
    subject: list[int] = []
    vectors: list[np.ndarray] = []
    for i, (_, file) in enumerate(photos):
        progress()
        try:
            image = read_image(file)
        except InputError as err:
            log.warning("bench.unreadable", photo=str(file), why=err.reason)
            subject.append(-1)
            continue
        faces = pipeline.detect(image)
        chosen = choose_subject(faces, rule=rule).face
        chips = pipeline.align(image, faces)
        first = len(face_photo)
        index = -1
        for j, face in enumerate(faces):
            if face is chosen and not rule.refusals(assess(face, chips[j], pipeline.quality_config).reasons):
                index = first + j
        face_photo += [i] * len(faces)
        subject.append(index)
        if len(faces):
            vectors.append(pipeline.embed(chips))
    dim = pipeline.embedder.dim
    result = FaceSet(
        people,
        np.asarray([people.index(p) for p, _ in photos]),
        np.asarray(face_photo, np.int64),
        np.asarray(subject, np.int64),
        np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, photo_person=result.photo_person, face_photo=result.face_photo, subject=result.subject,
                 vectors=result.vectors)  # fmt: skip
    return result


@dataclass
class Split:
    """One split's search outcomes: per probe photo, the best face's score against every enrolled person."""

    mated: np.ndarray  # (P, persons)
    truth: np.ndarray  # (P,)
    nonmated: np.ndarray  # (Q, persons)
    enrol_photos: int
    enrolled_photos: int
    persons: int


def run_split(data: FaceSet, seed: int, k: int, stranger_share: float) -> Split:
    rng = np.random.default_rng(seed)
    n = len(data.people)
    strangers = set(rng.permutation(n)[: round(stranger_share * n)].tolist())
    enrolled = [p for p in range(n) if p not in strangers]
    column = {p: j for j, p in enumerate(enrolled)}
    gallery, owner, mated_photos, nonmated_photos, tried = [], [], [], [], 0
    for person in range(n):
        photos = rng.permutation(np.flatnonzero(data.photo_person == person))
        if person in strangers:
            nonmated_photos += photos.tolist()
            continue
        take = min(k, len(photos) - 1)
        tried += take
        for photo in photos[:take]:
            if data.subject[photo] >= 0:
                gallery.append(data.subject[photo])
                owner.append(column[person])
        mated_photos += photos[take:].tolist()
    vectors, owners = data.vectors[gallery], np.asarray(owner)

    def rows(photos: list[int]) -> np.ndarray:
        out = np.full((len(photos), len(enrolled)), -np.inf)
        for r, photo in enumerate(photos):
            faces = data.faces_of(photo)
            if not len(faces) or not len(vectors):
                continue
            raw = data.vectors[faces] @ vectors.T
            scores = np.full((len(faces), len(enrolled)), -np.inf)
            for j in np.unique(owners):
                scores[:, j] = raw[:, owners == j].max(1)
            out[r] = scores[scores.max(1).argmax()]
        return out

    truth = np.asarray([column[int(data.photo_person[p])] for p in mated_photos])
    return Split(rows(mated_photos), truth, rows(nonmated_photos), tried, len(gallery), len(set(owner)))


def fnir(split: Split, threshold: float) -> float:
    top = split.mated.argmax(1)
    hit = (top == split.truth) & (split.mated.max(1) >= threshold)
    return float(1 - hit.mean()) if len(hit) else math.nan


def fpir(split: Split, threshold: float) -> float:
    return float(np.mean(split.nonmated.max(1) >= threshold)) if len(split.nonmated) else math.nan


def threshold_for_fpir(split: Split, target: float) -> float:
    tops = np.sort(split.nonmated.max(1))[::-1]
    allowed = math.floor(target * len(tops))
    return float(np.nextafter(tops[allowed], np.inf)) if allowed < len(tops) else -1.0


def impostor_scores(data: FaceSet) -> np.ndarray:
    """Every different-person pair of subject faces, sorted."""
    photos = np.flatnonzero(data.subject >= 0)
    vectors, person = data.vectors[data.subject[photos]], data.photo_person[photos]
    scores = vectors @ vectors.T
    upper = np.triu_indices(len(vectors), 1)
    return np.sort(scores[upper][person[upper[0]] != person[upper[1]]])


@dataclass
class Figures:
    embedder: str
    splits: int
    enrol_per_person: int
    rank1: float
    fte: float
    persons: float
    build_threshold: float
    fpir_at_build: float
    fnir_at_build: float
    target_fpir: float
    measured_threshold: float
    fnir_at_measured: float
    impostor_pairs: int
    fmr_points: list[tuple[float, float]] = field(default_factory=list)  # (FMR, threshold)
    at_n: dict = field(default_factory=dict)


def measure(
    data: FaceSet,
    name: str,
    extra: dict,
    splits: int,
    k: int,
    target: float,
    gallery_size: int,
    photos_per_person: float,
    stranger_share: float = 1 / 3,
) -> Figures:
    runs = [run_split(data, seed, k, stranger_share) for seed in range(splits)]
    build = [choose_threshold(name, extra, r.persons, r.enrolled_photos, None, target)[0] for r in runs]
    measured = [threshold_for_fpir(r, target) for r in runs]
    impostors = impostor_scores(data)
    photos_n = round(gallery_size * photos_per_person)
    t_n, basis = choose_threshold(name, extra, gallery_size, photos_n, None, target)
    reached = int(np.sum(impostors >= t_n))
    # This data's own FMR at t_n when pairs reach it; else (no pair among them) the calibration's tail.
    fmr_n = reached / len(impostors) if reached else 1 - (1 - basis["predicted_fpir"]) ** (1 / photos_n)
    ranked = [r for r in runs if len(r.mated)]
    points = []
    for rate in (1e-3, 1e-4, 1e-5):
        allowed = math.floor(rate * len(impostors))
        if allowed >= 1:
            points.append((rate, float(impostors[len(impostors) - allowed])))
    return Figures(
        embedder=name,
        splits=splits,
        enrol_per_person=k,
        rank1=float(np.mean([np.mean(r.mated.argmax(1) == r.truth) for r in ranked])),
        fte=float(np.mean([1 - r.enrolled_photos / max(r.enrol_photos, 1) for r in runs])),
        persons=float(np.mean([r.persons for r in runs])),
        build_threshold=float(np.mean(build)),
        fpir_at_build=float(np.mean([fpir(r, t) for r, t in zip(runs, build)])),
        fnir_at_build=float(np.mean([fnir(r, t) for r, t in zip(runs, build)])),
        target_fpir=target,
        measured_threshold=float(np.mean(measured)),
        fnir_at_measured=float(np.mean([fnir(r, t) for r, t in zip(runs, measured)])),
        impostor_pairs=len(impostors),
        fmr_points=points,
        at_n={
            "persons": gallery_size,
            "photos": photos_n,
            "threshold": t_n,
            "threshold_extrapolated": basis.get("model_calibration", {}).get("extrapolated_beyond_measured"),
            "pairs_reaching_it": reached,
            "fmr": fmr_n,
            "fmr_from": "this data's different-person pairs" if reached else "the model's calibration tail",
            "fpir_extrapolated": 1 - (1 - fmr_n) ** photos_n,
            "fnir_measured": float(np.mean([fnir(r, t_n) for r in runs])),
        },
    )


def table(figures: list[Figures]) -> list[str]:
    """Side by side, one column per embedder."""
    rows: list[tuple[str, Callable[[Figures], str]]] = [
        ("people enrolled (mean)", lambda f: f"{f.persons:.0f}"),
        ("photos enrolled per person", lambda f: str(f.enrol_per_person)),
        ("rank-1", lambda f: f"{f.rank1:.3f}"),
        ("failure to enrol (photos)", lambda f: f"{f.fte:.1%}"),
        ("threshold build picks", lambda f: f"{f.build_threshold:.3f}"),
        ("  FPIR there (strangers)", lambda f: f"{f.fpir_at_build:.3f}"),
        ("  FNIR there (FTE as misses)", lambda f: f"{f.fnir_at_build:.3f}"),
        ("threshold for measured FPIR <= target", lambda f: f"{f.measured_threshold:.3f}"),
        ("  FNIR there", lambda f: f"{f.fnir_at_measured:.3f}"),
        *[
            (f"t at FMR {rate:.0e} (all diff-person pairs)", lambda f, i=i: f"{f.fmr_points[i][1]:.3f}")
            for i, rate in enumerate((1e-3, 1e-4, 1e-5))
        ],
        ("at N: threshold build picks", lambda f: f"{f.at_n['threshold']:.3f}" + ("*" if f.at_n["threshold_extrapolated"] else "")),
        ("  pairs of this set at or above it", lambda f: str(f.at_n["pairs_reaching_it"])),
        ("  FPIR extrapolated to N", lambda f: f"{f.at_n['fpir_extrapolated']:.3f}" + ("" if f.at_n["pairs_reaching_it"] else "+")),
        ("  FNIR measured there", lambda f: f"{f.at_n['fnir_measured']:.3f}"),
    ]  # fmt: skip
    width = max(18, *(len(f.embedder) for f in figures))
    head = f"{'':40s}" + "".join(f"{f.embedder:>{width + 2}s}" for f in figures)
    lines = [head]
    for label, cell in rows:
        values = []
        for f in figures:
            try:
                values.append(cell(f))
            except (IndexError, KeyError):
                values.append("-")
        lines.append(f"{label:40s}" + "".join(f"{v:>{width + 2}s}" for v in values))
    return lines
