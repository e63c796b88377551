"""Building and updating galleries: records -> enrolment -> signed bundle.

- ``build_gallery(records, out_dir, private_key, pipeline, ...)``: a full build (version 1 by default);
- ``build_gallery_from_folders(folder, out_dir, private_key, pipeline, policy=None, people=None)``;
- ``update_gallery(base_dir, records, out_dir, private_key, pipeline, ...)``: the next version
  from a previous bundle, enrolling only new or changed photos, with a delta a device can apply.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookout.digest import sha256_bytes, sha256_file
from lookout.errors import InputError
from lookout.face.image_io import MAX_PIXELS
from lookout.face.pipeline import FacePipeline
from lookout.face.subject import SubjectRule
from lookout.gallery import metadata
from lookout.gallery.delta import DeltaDoc, apply_delta
from lookout.gallery.format import GALLERY, INDEX, Manifest, ModelInfo, ThresholdInfo, gallery_id_problem
from lookout.gallery.index import IndexParams, VectorIndex
from lookout.gallery.keys import load_private_key
from lookout.gallery.policy import Policy
from lookout.gallery.purpose import DEFAULT_PURPOSE
from lookout.gallery.threshold import (
    DEFAULT_TARGET_FPIR,
    GalleryScores,
    choose_threshold,
    operator_threshold_problem,
    predict_at,
    threshold_problem,
)
from lookout.gallery.verify import check_files, read_manifest
from lookout.log import get_logger
from lookout.progress import Progress
from lookout.sync.enrol import (
    ENROLLED,
    EnrolCache,
    Enroller,
    PhotoFetcher,
    PhotoResult,
    mark_duplicates,
    no_jurisdiction_detail,
)
from lookout.sync.records import PersonRecord, PhotoRecord, group_persons, with_jurisdiction
from lookout.sync.report import summarise, summary_headline, summary_line, write_report
from lookout.sync.seal import seal_bundle, write_delta
from lookout.sync.sources.folders import read_folders

log = get_logger(__name__)


@dataclass
class BuildReport:
    bundle_dir: Path
    manifest: Manifest
    results: list[PhotoResult]
    summary: dict
    embedded: int  # embeddings computed in this run (cached results not counted)
    unchanged: int = 0  # photos carried over from the previous version (updates)
    changes: dict = field(default_factory=dict)  # updates: persons added/updated/removed, photos added/removed

    @property
    def headline(self) -> str | None:
        """Nothing enrolled because records have no jurisdiction: the line to show first (else None)."""
        return summary_headline(self.summary)

    @property
    def summary_line(self) -> str:
        """The summary in one line, starting with the headline when there is one."""
        return f"{self.headline}. {self.details_line}" if self.headline else self.details_line

    @property
    def details_line(self) -> str:
        """The summary without the headline (for output that shows the headline on a line of its own)."""
        line = summary_line(self.summary, headline=False)
        if self.changes:
            line += "; changes: " + ", ".join(f"{k} {v}" for k, v in self.changes.items())
        return line


def _model_info(pipeline: FacePipeline) -> ModelInfo:
    embedder = pipeline.embedder
    return ModelInfo(name=embedder.name, digest=embedder.digest, dim=embedder.dim, precision=embedder.precision)


# A target FPIR above this needs --accept-fpir (a typo: 0.1 for 0.001); below MIN_TARGET_FPIR no calibration can say.
MAX_TARGET_FPIR = 0.05
MIN_TARGET_FPIR = 1e-6
# A threshold predicted to miss at least this share of enrolled people needs --accept-fnir (0.95 for 0.35).
MAX_FNIR = 0.5


def check_build_options(
    threshold: float | None = None,
    target_fpir: float | None = None,
    version: int | None = None,
    accept_fpir: bool = False,
) -> None:
    """Refuse a bad option in one line before any source is read, photo fetched or folder made."""
    if threshold is not None and (problem := threshold_problem(threshold)):
        raise InputError("--threshold", problem)
    if target_fpir is not None and not 0 < target_fpir < 1:
        raise InputError("--target-fpir", f"a share of strangers between 0 and 1 (both excluded), got {target_fpir}")
    if target_fpir is not None and target_fpir < MIN_TARGET_FPIR:
        raise InputError(
            "--target-fpir", f"{target_fpir:g} is below {MIN_TARGET_FPIR:g}: no calibration measures rates that small"
        )
    if target_fpir is not None and target_fpir > MAX_TARGET_FPIR and not accept_fpir:
        raise InputError(
            "--target-fpir",
            f"{target_fpir:g}: {target_fpir:.0%} of strangers walking past would be named as someone (the default "
            f"is {DEFAULT_TARGET_FPIR:g}); check the value, or pass --accept-fpir to build for it anyway",
        )
    if version is not None and version < 1:
        raise InputError("--bundle-version", f"a bundle version is 1 or more, got {version}")


def _threshold(
    value: float | None,
    pipeline: FacePipeline,
    vectors: np.ndarray,
    owners: list[str],
    target_fpir: float,
    accept_fpir: bool = False,
    accept_fnir: bool = False,
) -> ThresholdInfo:
    """The operator's threshold, or one chosen for ``target_fpir`` at this gallery's size (lookout/gallery/threshold.py).
    An operator's threshold carries what it predicts at this size; one predicted far above the target is refused
    unless ``accept_fpir``."""
    codes = {p: i for i, p in enumerate(sorted(set(owners)))}
    own = GalleryScores.from_vectors(vectors, np.asarray([codes[p] for p in owners], np.int64)) if owners else None
    embedder = pipeline.embedder
    if value is not None:
        basis = predict_at(value, embedder.name, embedder.manifest.extra, len(codes), len(owners), own, target_fpir)
        problem = operator_threshold_problem(basis)
        if problem and not accept_fpir:
            raise InputError(f"--threshold {value}", problem)
        if problem:
            basis["accepted_by_operator"] = "--accept-fpir"
            log.warning("threshold.accepted_far_above_target", threshold=value, why=problem)
        return ThresholdInfo(value=value, basis=_check_fnir(value, basis, accept_fnir))
    try:
        chosen, basis = choose_threshold(
            embedder.name, embedder.manifest.extra, len(codes), len(owners), own, target_fpir
        )
    except ValueError as err:
        raise InputError(f"model {embedder.name}", str(err)) from None
    fnir = basis.get("predicted_fnir")
    if fnir is not None and fnir >= MAX_FNIR:  # chosen for the target: said, not refused (the model's trade-off)
        log.warning("threshold.high_fnir", threshold=chosen, predicted_fnir=fnir, target_fpir=target_fpir)
    return ThresholdInfo(value=chosen, basis=basis)


def _check_fnir(threshold: float, basis: dict[str, Any], accept_fnir: bool) -> dict[str, Any]:
    """An operator's threshold predicted to miss half the enrolled people or more is refused unless
    ``accept_fnir`` (0.99 for 0.35): a missing-persons gallery that never alerts is as wrong as one that always
    does. A threshold chosen for the target is not checked: a weaker model's trade-off is not a typo."""
    fnir = basis.get("predicted_fnir")
    if fnir is None or fnir < MAX_FNIR:
        return basis
    problem = (
        f"predicted FNIR {fnir:.0%}: the gallery would miss that share of the people enrolled in it; check the "
        f"value, or pass --accept-fnir to sign it anyway"
    )
    if not accept_fnir:
        raise InputError(f"threshold {threshold:g}", problem)
    log.warning("threshold.accepted_high_fnir", threshold=threshold, why=problem)
    return {**basis, "accepted_fnir_by_operator": "--accept-fnir"}


def _enrol_all(
    persons: dict[str, PersonRecord],
    pipeline: FacePipeline,
    policy: Policy,
    purpose: str,
    work_dir: Path | None,
    progress: bool,
    skip: Set[tuple[str, str]] = frozenset(),
    max_pixels: int = MAX_PIXELS,
    rule: SubjectRule | None = None,
    withdrawn_sha256: dict[str, str] | None = None,
    withdrawn_ids: Set[str] = frozenset(),
) -> tuple[list[PhotoResult], Enroller]:
    cache = EnrolCache(work_dir / "enrol-cache.sqlite") if work_dir else None
    fetcher = PhotoFetcher(cache_dir=work_dir / "photos" if work_dir else None)
    enroller = Enroller(
        pipeline,
        policy,
        purpose,
        fetcher,
        cache,
        max_pixels=max_pixels,
        rule=rule,
        withdrawn_sha256=withdrawn_sha256,
        withdrawn_ids=set(withdrawn_ids),
    )
    todo = [p for person in persons.values() for p in person.photos if (p.key, p.photo) not in skip]
    bar = Progress(len(todo), "photos", progress)
    results = []
    try:
        for rec in todo:
            results.append(enroller.enrol(rec))
            bar.step()
    finally:
        if cache:
            cache.close()
    mark_duplicates(results)
    return results, enroller


def _finish_dir(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        if any(out_dir.iterdir()):
            raise InputError(str(out_dir), "output folder exists and is not empty")
        out_dir.rmdir()
    os.replace(tmp, out_dir)


def check_output_dir(out_dir: Path) -> None:
    """Refuse an output folder that exists and is not empty, before any photo is fetched or embedded."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(str(out_dir), "output folder exists and is not empty")


def _tmp_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    check_output_dir(out_dir)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))


def _vectors(results: list[PhotoResult], dim: int) -> np.ndarray:
    """The embeddings of enrolled photos, stacked (N, dim); an enrolled photo without one is a bug."""
    vectors = [r.embedding for r in results]
    if any(v is None for v in vectors):
        raise AssertionError("an enrolled photo has no embedding")
    return np.stack([v for v in vectors if v is not None]) if vectors else np.zeros((0, dim), np.float32)


def _photo_row(r: PhotoResult, label: int) -> list[Any]:
    return [
        r.photo_id,
        r.person_id,
        label,
        r.source,
        r.sha256,
        json.dumps(r.box),
        json.dumps(r.quality, sort_keys=True),
    ]


def build_gallery(
    records: Iterable[PhotoRecord],
    out_dir: Path,
    private_key,
    pipeline: FacePipeline,
    policy: Policy | None = None,
    purpose: str = DEFAULT_PURPOSE,
    threshold: float | None = None,
    params: IndexParams | None = None,
    work_dir: Path | None = None,
    report_path: Path | None = None,
    version: int = 1,
    progress: bool = True,
    target_fpir: float = DEFAULT_TARGET_FPIR,
    max_pixels: int = MAX_PIXELS,
    subject_rule: SubjectRule | None = None,
    jurisdiction: str | None = None,
    gallery_id: str | None = None,
    accept_fpir: bool = False,
    accept_fnir: bool = False,
) -> BuildReport:
    """Enrol every photo and write a signed bundle to ``out_dir`` (which must not exist or be empty).

    ``gallery_id``: the gallery line the bundle starts (kept by every update; devices configured with it refuse
    other galleries' bundles); default: a new random id, logged and in the manifest.

    Without ``threshold``, the decision threshold is chosen for ``target_fpir`` at the gallery's size. With it, the
    bundle records the FPIR it predicts at this size, and a prediction over ``FAR_ABOVE_TARGET`` times the target
    is refused unless ``accept_fpir`` (so is a ``target_fpir`` over ``MAX_TARGET_FPIR``), and an operator's threshold
    predicted to miss ``MAX_FNIR`` of the enrolled or more unless ``accept_fnir``.

    ``jurisdiction``: where the source's people are, for records that do not say (normalised; ``--jurisdiction``).
    A record with no jurisdiction and no such default is unknown, and refused (policy_excluded) unless the
    policy file says ``unknown_jurisdiction: allow``."""
    check_build_options(threshold, target_fpir, version, accept_fpir)
    private_key = load_private_key(private_key)  # a bad key is said before any photo is embedded
    policy = policy or Policy.default()
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    gallery_id = _gallery_id(gallery_id)
    persons = group_persons(with_jurisdiction(records, jurisdiction))
    results, enroller = _enrol_all(
        persons, pipeline, policy, purpose, work_dir, progress, max_pixels=max_pixels, rule=subject_rule
    )
    enrolled = [r for r in results if r.status == ENROLLED]
    tmp = _tmp_dir(out_dir)
    try:
        conn = metadata.create(tmp / GALLERY)
        with conn:
            ids = {r.person_id for r in enrolled}
            metadata.upsert_persons(conn, [metadata.person_row(p) for pid, p in persons.items() if pid in ids])
            metadata.insert_photos(conn, [tuple(_photo_row(r, i)) for i, r in enumerate(enrolled)])
        conn.execute("VACUUM")
        conn.close()
        index = VectorIndex.create(pipeline.embedder.dim, params, capacity=max(len(enrolled), 1))
        vectors = _vectors(enrolled, pipeline.embedder.dim)
        if enrolled:
            index.add(vectors, np.arange(len(enrolled)))
        index.save(tmp / INDEX)
        manifest = seal_bundle(
            tmp,
            version=version,
            purpose=purpose,
            model=_model_info(pipeline),
            threshold=_threshold(
                threshold, pipeline, vectors, [r.person_id for r in enrolled], target_fpir, accept_fpir, accept_fnir
            ),
            index=index,
            policy=policy,
            private_key=private_key,
            gallery_id=gallery_id,
        )
        _finish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = _summarise_and_report(results, report_path)
    report = BuildReport(out_dir, manifest, results, summary, enroller.embedded)
    _warn_headline(report)
    log.info(
        "gallery.built",
        bundle=str(out_dir),
        gallery_id=gallery_id,
        version=version,
        persons=manifest.counts["persons"],
        photos=manifest.counts["photos"],
        embedded=enroller.embedded,
        summary=summary_line(summary),
    )
    return report


def build_gallery_from_folders(
    folder: Path,
    out_dir: Path,
    private_key,
    pipeline: FacePipeline,
    policy: Policy | None = None,
    people: Path | dict | None = None,
    **kwargs,
) -> BuildReport:
    """A gallery from ``<folder>/<person>/<photo>``; ``people`` adds per-person fields (e.g. jurisdiction)."""

    return build_gallery(read_folders(Path(folder), people), out_dir, private_key, pipeline, policy, **kwargs)


def update_gallery(
    base_dir: Path,
    records: Iterable[PhotoRecord],
    out_dir: Path,
    private_key,
    pipeline: FacePipeline,
    policy: Policy | None = None,
    public_key=None,
    only_listed: bool = False,
    remove: Iterable[str] = (),
    threshold: float | None = None,
    work_dir: Path | None = None,
    report_path: Path | None = None,
    progress: bool = True,
    max_pixels: int = MAX_PIXELS,
    withdraw: Iterable[str] = (),
    reinstate: Iterable[str] = (),
    subject_rule: SubjectRule | None = None,
    target_fpir: float | None = None,
    jurisdiction: str | None = None,
    gallery_id: str | None = None,
    accept_fpir: bool = False,
    accept_fnir: bool = False,
) -> BuildReport:
    """The next version of ``base_dir``: ``records`` is the new state of the source (people missing
    from it are removed, unless ``only_listed``); ``remove`` names people to remove; ``withdraw`` names
    photo ids whose consent is withdrawn (as a record saying ``use_for_recognition: false`` does). Only
    new or changed photos are enrolled. Writes the full new bundle plus its delta to ``out_dir``.

    Consent withdrawn, a person gone from the source, a person now in a jurisdiction (or department)
    the policy denies, a person named in ``remove``: their photos leave the bundle, the delta carries
    the removal to devices, and the report lists each removed photo (status ``removed``) with its reason
    (``withdrawn``, ``left_source``, ``policy_excluded``, ``removed_by_operator``).

    Withdrawals and removals made here (``withdraw``, ``remove``) are kept in the bundle's withdrawal
    ledger: later updates never re-enrol those photos or people, whatever the source says, until
    ``reinstate`` names them (photo ids or person ids).

    The threshold is chosen again for the new gallery size (at ``target_fpir``, default the base
    bundle's target), unless ``threshold`` is given (checked as in ``build_gallery``, ``accept_fpir`` too).

    ``jurisdiction``: the source-wide default for records that give none, as for ``build_gallery``.
    ``gallery_id``: the base's is kept (another is refused); a base built before gallery ids gets this one, or a new
    random one.
    ``policy`` None: the previous version's policy, unless that was an earlier built-in one (which let people
    with no jurisdiction in): then today's built-in policy, so such people leave the gallery."""
    check_build_options(threshold, target_fpir, accept_fpir=accept_fpir)
    private_key = load_private_key(private_key)  # a bad key is said before any photo is embedded
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    check_output_dir(out_dir)
    # The base is verified, always: its withdrawal ledger keeps withdrawn people out of every later version, so an
    # edited base must never be re-signed (attack A26). The builder holds the private key, hence its public half.
    base, base_bytes = read_manifest(base_dir, public_key if public_key is not None else private_key.public_key())
    check_files(base_dir, base.files)
    if base.model.digest != pipeline.embedder.digest:
        raise InputError(
            str(base_dir),
            f"built with model {base.model.name} {base.model.digest[:12]}, this pipeline runs "
            f"{pipeline.embedder.name} {pipeline.embedder.digest[:12]}: rebuild instead of updating",
        )
    if base.gallery_id is not None and gallery_id not in (None, base.gallery_id):
        raise InputError(
            f"--gallery-id {gallery_id}", f"{base_dir} belongs to gallery {base.gallery_id}: an update keeps it"
        )
    gallery_id = base.gallery_id or _gallery_id(gallery_id)
    policy = policy or _inherited_policy(base_dir)
    conn = metadata.connect_readonly(base_dir / GALLERY)
    old_persons, old_photos = metadata.persons(conn), metadata.photos(conn)
    old_ledger = metadata.withdrawn(conn)
    conn.close()
    old_by_person: dict[str, list[dict]] = {}
    for p in old_photos:
        old_by_person.setdefault(p["person_id"], []).append(p)

    persons = group_persons(with_jurisdiction(records, jurisdiction))
    _check_named(set(withdraw), set(remove), old_photos, old_persons, persons, base_dir)
    contents = _contents(set(withdraw), set(remove), old_photos, persons)
    ledger = _ledger(old_ledger, set(withdraw), set(remove), set(reinstate), contents)
    withdraw, remove = ledger.photos, ledger.persons
    gone = {_same_person(pid) for pid in remove}  # `Amy` is the `amy` an operator removed
    for pid in [pid for pid in persons if _same_person(pid) in gone]:
        persons.pop(pid)
    for person in persons.values():  # a withdrawn photo is never enrolled again, even if the source offers it
        person.photos = [
            r.model_copy(update={"use_for_recognition": False}) if r.key in withdraw else r for r in person.photos
        ]
    keep_unchanged = {(p["photo_id"], p["source"]) for p in old_photos}
    moved = _moved_unchanged(old_photos, persons, keep_unchanged)  # same id, same bytes, another path
    keep_unchanged |= set(moved)
    # photos of people the policy now denies must go, and never be re-embedded
    results, enroller = _enrol_all(
        persons,
        pipeline,
        policy,
        base.purpose,
        work_dir,
        progress,
        skip=keep_unchanged,
        max_pixels=max_pixels,
        rule=subject_rule,
        withdrawn_sha256=ledger.sha256,
        withdrawn_ids=withdraw,
    )
    denied = _denied_persons(persons, old_persons if only_listed else {}, policy, base.purpose)
    withdrawn = withdraw | {
        rec.key for person in persons.values() for rec in person.photos if not rec.use_for_recognition
    }
    new_ok = {r.photo_id: r for r in results if r.status == ENROLLED}
    listed = {(rec.key, rec.photo) for person in persons.values() for rec in person.photos}
    listed |= {(key, old_source) for (key, _new), old_source in moved.items()}
    remove_persons = {
        pid
        for pid in old_persons
        if _same_person(pid) in gone or pid in denied or (not only_listed and pid not in persons)
    }
    remove_photos: list[dict] = []
    removals: list[PhotoResult] = []
    kept = 0
    for pid, photos in old_by_person.items():
        for p in photos:
            why = _removal_reason(p, pid, gone, denied, remove_persons, withdrawn, persons, listed, new_ok)
            if why is None and p["sha256"] in ledger.sha256:  # a copy of withdrawn bytes under another id
                why = "withdrawn", f"the same photo was withdrawn: {ledger.sha256[p['sha256']]}"
            if why is None:
                kept += 1
                continue
            remove_photos.append(p)
            if why[0] != "replaced":
                removals.append(
                    PhotoResult(p["photo_id"], pid, p["source"] or "", REMOVED, reason=why[0], detail=why[1])
                )
    results.extend(removals)
    live_after: dict[str, int] = {}
    removed_ids = {p["photo_id"] for p in remove_photos}
    for p in old_photos:
        if p["photo_id"] not in removed_ids:
            live_after[p["person_id"]] = live_after.get(p["person_id"], 0) + 1
    for r in new_ok.values():
        live_after[r.person_id] = live_after.get(r.person_id, 0) + 1
    for pid in old_persons:  # a person left without any photo is removed
        if pid not in remove_persons and not live_after.get(pid):
            remove_persons.add(pid)
    upserts = []
    for pid, person in persons.items():
        if pid in remove_persons or pid in denied or not live_after.get(pid):
            continue
        row = metadata.person_row(person)
        old = old_persons.get(pid)
        if old is None or list(row) != list(metadata.person_row(old)):
            upserts.append(list(row))
    added = list(new_ok.values())
    next_label = base.index.elements
    doc = DeltaDoc(
        from_version=base.version,
        to_version=base.version + 1,
        capacity=max(base.index.capacity, base.index.elements + len(added)),
        remove_persons=sorted(remove_persons),
        remove_photos=sorted(p["photo_id"] for p in remove_photos),
        remove_labels=sorted(int(p["label"]) for p in remove_photos),
        upsert_persons=upserts,
        add_photos=[_photo_row(r, next_label + i) for i, r in enumerate(added)],
        withdraw=ledger.add,
        reinstate=ledger.drop,
    )
    vectors = _vectors(added, base.model.dim)
    tmp = _tmp_dir(out_dir)
    try:
        index = apply_delta(base_dir, base, doc, vectors, tmp)
        write_delta(tmp, doc, vectors)
        owner_by_label = {int(p["label"]): p["person_id"] for p in old_photos if p["photo_id"] not in removed_ids}
        owner_by_label.update({next_label + i: r.person_id for i, r in enumerate(added)})
        live = sorted(owner_by_label)
        target = target_fpir or float(base.threshold.basis.get("target_fpir", DEFAULT_TARGET_FPIR))
        manifest = seal_bundle(
            tmp,
            version=base.version + 1,
            purpose=base.purpose,
            model=base.model,
            threshold=_threshold(
                threshold,
                pipeline,
                index.get(live) if live else np.zeros((0, base.model.dim), np.float32),
                [owner_by_label[label] for label in live],
                target,
                accept_fpir,
                accept_fnir,
            ),
            index=index,
            policy=policy,
            private_key=private_key,
            delta_from=(base.version, sha256_bytes(base_bytes)),
            gallery_id=gallery_id,
        )
        _finish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = _summarise_and_report(results, report_path)
    changes = {
        "persons_added": sum(1 for r in upserts if r[0] not in old_persons),
        "persons_updated": sum(1 for r in upserts if r[0] in old_persons),
        "persons_removed": len(remove_persons),
        "photos_added": len(added),
        "photos_removed": len(remove_photos),
    }
    report = BuildReport(out_dir, manifest, results, summary, enroller.embedded, kept, changes)
    _warn_headline(report)
    log.info(
        "gallery.updated",
        bundle=str(out_dir),
        version=manifest.version,
        **changes,
        embedded=enroller.embedded,
        delta_bytes=sum(e.size for e in manifest.delta.files.values()) if manifest.delta else 0,
        full_bytes=sum(e.size for e in manifest.files.values()),
    )
    return report


REMOVED = "removed"


def _check_named(
    withdraw: set[str],
    remove: set[str],
    old_photos: list[dict],
    old_persons: dict[str, dict],
    persons: dict[str, PersonRecord],
    base_dir: Path,
) -> None:
    """A photo id to withdraw or a person id to remove that is neither in the gallery nor in the source is a
    mistake (a typo would leave the photo someone asked to withdraw in place): refuse, naming the ids."""
    photos = {p["photo_id"] for p in old_photos} | {r.key for person in persons.values() for r in person.photos}
    unknown = sorted(withdraw - photos) + sorted(remove - set(old_persons) - set(persons))
    if unknown:
        raise InputError(
            str(base_dir),
            f"not a photo id (--withdraw) or person id (--remove) of this gallery or its source: "
            f"{', '.join(map(repr, unknown[:5]))}{' ...' if len(unknown) > 5 else ''}; nothing was changed",
        )


SHA256 = "sha256"  # ledger kind: the bytes of a withdrawn photo, or of a removed person's photo


@dataclass
class Ledger:
    """The withdrawal ledger after this update: rows to add and to lift, the photo ids withdrawn and person ids
    removed (this update's own and the ledger's, less those reinstated), and the withdrawn bytes (SHA-256 -> why)."""

    add: list[list[str]]
    drop: list[list[str]]
    photos: set[str]
    persons: set[str]
    sha256: dict[str, str]


def _ledger(
    old: dict[tuple[str, str], tuple[str, str]],
    withdraw: set[str],
    remove: set[str],
    reinstate: set[str],
    contents: dict[str, set[str]],
) -> Ledger:
    """The ledger follows the photo, not its path: each withdrawn photo and each photo of a removed person is kept
    by its SHA-256 too (``contents``: "photo <id>" / "person <id>" -> digests), so the same bytes under another file
    name, photo id or person id are never enrolled again. A reinstated id lifts its digests with it."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def lifted(kind: str, ident: str, reason: str) -> bool:
        if kind != SHA256:
            return ident in reinstate
        subject = reason.split(":", 1)[0].split(" ", 1)  # "photo amy/amy1.png: ..." / "person amy: ..."
        return ident in reinstate or (len(subject) == 2 and subject[1] in reinstate)

    drop = [[kind, ident] for (kind, ident), (reason, _at) in old.items() if lifted(kind, ident, reason)]
    kept = {key: why for key, (why, _at) in old.items() if not lifted(key[0], key[1], why)}
    add = [["photo", p, "consent withdrawn by an operator", at] for p in sorted(withdraw) if ("photo", p) not in kept]
    add += [["person", p, "removed by an operator", at] for p in sorted(remove) if ("person", p) not in kept]
    for subject, digests in sorted(contents.items()):
        why = f"{subject}: consent withdrawn by an operator" if subject.startswith("photo ") else f"{subject}: removed"
        add += [[SHA256, d, why, at] for d in sorted(digests) if (SHA256, d) not in kept]
    photos = withdraw | {ident for kind, ident in kept if kind == "photo"}
    persons = remove | {ident for kind, ident in kept if kind == "person"}
    sha = {ident: why for (kind, ident), why in kept.items() if kind == SHA256}
    sha.update({row[1]: row[2] for row in add if row[0] == SHA256})
    return Ledger(add, drop, photos - reinstate, persons - reinstate, sha)


def _gallery_id(given: str | None) -> str:
    """A gallery id as given (checked), or a new random one."""
    if given is None:
        return f"g-{secrets.token_hex(8)}"
    problem = gallery_id_problem(given)
    if problem:
        raise InputError(f"gallery id {given!r}", problem)
    return given


def _same_person(person_id: str) -> str:
    """Person ids as the ledger compares them: NFKC, case-folded (``Amy`` is the ``amy`` an operator removed)."""
    return unicodedata.normalize("NFKC", person_id).casefold()


def _local_sha256(photo: str) -> str | None:
    """The SHA-256 of a local photo file (None for a URL or a path that is not a regular file)."""
    if "://" in photo:
        return None
    path = Path(photo)
    try:
        return sha256_file(path) if path.is_file() else None
    except OSError:
        return None


def _contents(
    withdraw: set[str], remove: set[str], old_photos: list[dict], persons: dict[str, PersonRecord]
) -> dict[str, set[str]]:
    """The bytes being withdrawn or removed in this update: "photo <id>" / "person <id>" -> SHA-256 digests, from
    the gallery (its stored digests) and, for photos not enrolled yet, from the source's local files."""
    out: dict[str, set[str]] = {}
    gone = {_same_person(p) for p in remove}
    for p in old_photos:
        if p["photo_id"] in withdraw and p["sha256"]:
            out.setdefault(f"photo {p['photo_id']}", set()).add(p["sha256"])
        if _same_person(p["person_id"]) in gone and p["sha256"]:
            out.setdefault(f"person {p['person_id']}", set()).add(p["sha256"])
    for person in persons.values():
        for rec in person.photos:
            if rec.key in withdraw and (digest := _local_sha256(rec.photo)):
                out.setdefault(f"photo {rec.key}", set()).add(digest)
    return out


def _moved_unchanged(
    old_photos: list[dict], persons: dict[str, PersonRecord], unchanged: set[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Records whose photo id the gallery holds with the same bytes at another path (a source folder moved or
    copied): (photo id, new path) -> the stored path. They are unchanged: not removed, not fetched or embedded
    again (the bundle keeps the stored path)."""
    old = {p["photo_id"]: p for p in old_photos}
    moved = {}
    for person in persons.values():
        for rec in person.photos:
            was = old.get(rec.key)
            if was is None or was["person_id"] != rec.person_id or (rec.key, rec.photo) in unchanged:
                continue
            if was["sha256"] and _local_sha256(rec.photo) == was["sha256"]:
                moved[(rec.key, rec.photo)] = was["source"]
    return moved


def _denied_persons(
    persons: dict[str, PersonRecord], unlisted: dict[str, dict], policy: Policy, purpose: str
) -> dict[str, str]:
    """Person id -> why the policy denies them: people of the source, and people of the previous version that
    stay without being listed (``only_listed``) whose stored jurisdiction or department the policy now denies
    (an older build's people with no jurisdiction, say)."""
    places = {pid: (p.jurisdiction, p.department) for pid, p in persons.items()}
    for pid, p in unlisted.items():
        places.setdefault(pid, (p["jurisdiction"], p["department"]))
    denied = {}
    for pid, (jurisdiction, department) in places.items():
        decision = policy.decide(jurisdiction, purpose, department)
        if not decision.allowed:
            denied[pid] = no_jurisdiction_detail(decision.reason) if decision.unknown else decision.reason
    return denied


def _removal_reason(
    photo: dict,
    pid: str,
    remove: set[str],
    denied: dict[str, str],
    remove_persons: set[str],
    withdrawn: set[str],
    persons: dict[str, PersonRecord],
    listed: set[tuple[str, str]],
    new_ok: dict[str, PhotoResult],
) -> tuple[str, str] | None:
    """(reason code, detail) when a photo of the previous version must leave the bundle, else None."""
    if _same_person(pid) in remove:
        return "removed_by_operator", f"person {pid!r} named for removal"
    if pid in denied:
        return "policy_excluded", denied[pid]
    if photo["photo_id"] in withdrawn:
        return "withdrawn", "consent withdrawn: use_for_recognition is false"
    if pid in remove_persons:
        return "left_source", f"person {pid!r} is no longer in the source"
    if pid in persons and (photo["photo_id"], photo["source"]) not in listed:
        return "left_source", "photo no longer in the person's record"
    if photo["photo_id"] in new_ok:
        return "replaced", "a new file under the same photo id"
    return None


def _inherited_policy(base_dir: Path) -> Policy:
    """The previous version's policy, or today's built-in one if that was an earlier built-in policy."""
    inherited = Policy.from_dict(json.loads((base_dir / "policy.json").read_bytes()), str(base_dir / "policy.json"))
    if not inherited.superseded_builtin:
        return inherited
    current = Policy.default()
    log.info(
        "gallery.policy_superseded",
        bundle=str(base_dir),
        was=inherited.version,
        now=current.version,
        effect="people with no jurisdiction are no longer enrolled",
    )
    return current


def _warn_headline(report: BuildReport) -> None:
    if report.headline:
        log.warning("gallery.nothing_enrolled", bundle=str(report.bundle_dir), why=report.headline)


def _summarise_and_report(results, report_path) -> dict:
    """The enrolment summary, also written as the failure-to-enrol report when a path is given."""
    summary = summarise(results)
    if report_path:
        write_report(results, report_path, summary)
    return summary
