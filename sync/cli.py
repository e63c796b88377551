"""`lookout gallery ...`, `lookout keys generate`, `lookout sync pull`, `lookout search`, `lookout bench index`."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lookout.errors import ConfigError, InputError
from lookout.evaluation.bundles import calibration_problems
from lookout.face.options import add_model_dir, add_pipeline_options, open_pipeline
from lookout.gallery.delta import read_delta
from lookout.gallery.index import IndexParams
from lookout.gallery.keys import generate_keys, load_private_key
from lookout.gallery.policy import Policy, check_photos_taken_in
from lookout.gallery.pull import BundlePuller
from lookout.gallery.purpose import DEFAULT_PURPOSE, PURPOSES, argparse_purpose
from lookout.gallery.reader import load_bundle
from lookout.gallery.search import search_paths
from lookout.gallery.store import BundleStore
from lookout.gallery.threshold import (
    DEFAULT_TARGET_FPIR,
    describe,
    operator_threshold_problem,
    predict_at,
    threshold_arg,
)
from lookout.gallery.verify import read_manifest, verify_bundle
from lookout.model_store.store import ModelStore
from lookout.sync.audit import audit_gallery
from lookout.sync.bench import run_index_bench
from lookout.sync.build import build_gallery, check_build_options, check_output_dir, update_gallery
from lookout.sync.enrol import PhotoResult
from lookout.sync.publish import publish
from lookout.sync.report import count, summarise, summary_line
from lookout.sync.sources import open_source


def _policy(args: argparse.Namespace):

    return Policy.load(args.policy) if getattr(args, "policy", None) else None


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
        raise argparse.ArgumentTypeError(f"--box must be x1,y1,x2,y2 with x2>x1 and y2>y1, not {text!r}")
    x1, y1, x2, y2 = values
    return x1, y1, x2, y2


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="a folder of identity folders (<person>/<photo>), a .csv/.json/.jsonl manifest (one row per "
        "photo), or an HTTP API URL template with {id} (see --api-config)",
    )
    p.add_argument(
        "--api-config", type=Path, metavar="FILE", help="YAML/JSON config of an HTTP API source (fields, rate limit...)"
    )
    p.add_argument(
        "--people",
        type=Path,
        metavar="FILE",
        help="with a folder source: CSV/JSON of person details by person_id (name, jurisdiction, department, ...)",
    )
    p.add_argument(
        "--encoding",
        metavar="NAME",
        help="text encoding of a CSV/JSON manifest or --people file (default UTF-8; e.g. cp1252, latin-1)",
    )
    p.add_argument(
        "--jurisdiction",
        metavar="CODE",
        help="where the source's people are, for records that do not say (ISO 3166-2, e.g. US-CA; 'California' "
        "reads US-CA). Without it, a record with no jurisdiction is refused: an unknown jurisdiction is denied",
    )
    p.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="jurisdiction policy (YAML/JSON); default: built-in (denies US-IL and records with no jurisdiction)",
    )
    p.add_argument("--report", type=Path, metavar="FILE", help="write the failure-to-enrol report (.csv or .json)")
    p.add_argument(
        "--work",
        type=Path,
        metavar="DIR",
        help="work folder for resuming: enrolment cache, downloads, HTTP walk state (default: OUT.work)",
    )
    p.add_argument(
        "--threshold",
        type=threshold_arg,
        help="decision threshold (cosine, -1 to 1); default: chosen for --target-fpir at this gallery's size. "
        "The build prints (and the manifest records) the FPIR it predicts at this gallery's size, and refuses "
        "one predicted over 5 times --target-fpir unless --accept-fpir",
    )
    p.add_argument(
        "--accept-fpir",
        action="store_true",
        help="sign a --threshold even though its predicted FPIR is far above the target, or build for a "
        "--target-fpir above 0.05 (said in the manifest)",
    )
    p.add_argument(
        "--accept-fnir",
        action="store_true",
        help="sign a --threshold predicted to miss half the enrolled people or more (said in the manifest)",
    )
    p.add_argument(
        "--target-fpir",
        type=float,
        default=None,
        metavar="RATE",
        help="share of strangers per decision allowed to match someone (default 0.01, or the base bundle's on update); "
        "the threshold is chosen for it from the model's calibration and the gallery's own scores",
    )
    p.add_argument(
        "--key", type=Path, required=True, metavar="PRIVATE.pem", help="Ed25519 private key (lookout keys generate)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_pipeline_options(p)


def register(commands: argparse._SubParsersAction) -> None:
    gallery = commands.add_parser("gallery", help="build, update, audit and publish signed gallery bundles")
    sub = gallery.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)

    build = sub.add_parser(
        "build",
        help="enrol every photo of a source into a new signed bundle",
        description="Ingest people and photos, enrol them under the jurisdiction policy and write "
        "a signed index bundle. Photos of denied jurisdictions are never embedded. Every record needs a "
        "jurisdiction, its own or the source's (--jurisdiction): one with none is refused (unknown is denied).",
    )
    _add_source(build)
    build.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="bundle folder to create (must be new or empty)"
    )
    build.add_argument(
        "--purpose",
        default=DEFAULT_PURPOSE,
        type=argparse_purpose,
        help=f"what the gallery is for, one of {', '.join(PURPOSES)} (policy rules may depend on it)",
    )
    build.add_argument(
        "--bundle-version",
        type=_at_least(1),
        default=1,
        metavar="N",
        help="version number of the bundle, 1 or more (default 1); devices install only a version above theirs",
    )
    build.add_argument(
        "--gallery-id",
        metavar="ID",
        help="the gallery line this bundle starts, kept by every update (default: a new random id, printed); "
        "configure devices with it (gallery.gallery_id, sync pull --gallery-id): they refuse other galleries' bundles",
    )
    build.add_argument("--M", type=_at_least(2), default=32, help="HNSW M (graph degree), 2 or more, default 32")
    build.add_argument(
        "--ef-construction", type=_at_least(1), default=200, help="HNSW ef_construction, 1 or more, default 200"
    )
    build.add_argument(
        "--ef", type=_at_least(1), default=256, help="HNSW ef at search time (saved in the manifest), default 256"
    )
    build.set_defaults(func=_gallery_build)

    update = sub.add_parser(
        "update",
        help="the next version of a bundle: add, update, remove people; writes a delta",
        description="SOURCE is the new state of the source: people missing from it are removed "
        "(unless --only-listed). Only new or changed photos are enrolled. The new "
        "bundle holds a delta from the previous version that devices apply.",
    )
    _add_source(update)
    update.add_argument("--gallery", type=Path, required=True, metavar="DIR", help="the previous bundle")
    update.add_argument("--out", type=Path, required=True, metavar="DIR", help="the new bundle folder")
    update.add_argument(
        "--only-listed", action="store_true", help="SOURCE lists only added/changed people: remove nobody else"
    )
    update.add_argument(
        "--remove", action="append", default=[], metavar="PERSON_ID", help="remove this person (repeatable)"
    )
    update.add_argument(
        "--withdraw",
        action="append",
        default=[],
        metavar="PHOTO_ID",
        help="consent withdrawn for this photo: remove it, and keep it out of later updates (repeatable)",
    )
    update.add_argument(
        "--reinstate",
        action="append",
        default=[],
        metavar="ID",
        help="lift an earlier --withdraw (photo id) or --remove (person id): the source may enrol it again",
    )
    update.add_argument("--public-key", type=Path, metavar="FILE", help="check the previous bundle's signature first")
    update.add_argument(
        "--gallery-id",
        metavar="ID",
        help="only for a previous bundle built before gallery ids: the id to give the line (default: a new one); "
        "otherwise the previous bundle's id is kept and another is refused",
    )
    update.set_defaults(func=_gallery_update)

    delta = sub.add_parser("delta", help="what changed in a bundle since its previous version, and the delta's size")
    delta.add_argument("bundle", type=Path, metavar="DIR")
    delta.add_argument("--json", action="store_true")
    delta.set_defaults(func=_gallery_delta)

    audit = sub.add_parser("audit", help="look-alike people and people whose photos disagree")
    audit.add_argument("bundle", type=Path, metavar="DIR")
    audit.add_argument("--threshold", type=threshold_arg, help="default: the bundle's threshold")
    audit.add_argument(
        "--public-key", type=Path, required=True, metavar="FILE", help="the key that signs your galleries (checked)"
    )
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=_gallery_audit)

    report = sub.add_parser("report", help="summarise a failure-to-enrol report file (.csv or .json)")
    report.add_argument("report", type=Path, metavar="FILE")
    report.set_defaults(func=_gallery_report)

    verify = sub.add_parser("verify", help="check a bundle as a device would (files, signature, model, policy)")
    verify.add_argument("bundle", type=Path, metavar="DIR")
    verify.add_argument("--public-key", type=Path, required=True, metavar="FILE")
    verify.add_argument("--model-digest", help="the device's embedder digest")
    verify.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="the device's policy (default: the built-in one, denying US-IL and people with no jurisdiction; "
        "the bundle's own applies too)",
    )
    verify.add_argument("--location", help="the device's jurisdiction, e.g. US-CA")
    verify.set_defaults(func=_gallery_verify)

    publish = sub.add_parser("publish", help="copy a bundle into a folder served by a static web server or S3 bucket")
    publish.add_argument("bundle", type=Path, metavar="DIR")
    publish.add_argument(
        "--to", type=Path, required=True, metavar="ROOT", help="publish folder (v/<version>/, manifest.json)"
    )
    publish.add_argument("--public-key", type=Path, metavar="FILE", help="check the signature before publishing")
    publish.set_defaults(func=_gallery_publish)

    keys = commands.add_parser("keys", help="signing keys for gallery bundles")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = ksub.add_parser(
        "generate", help="make an Ed25519 key pair: sign with the private key, give devices the public one"
    )
    gen.add_argument("--out", type=Path, required=True, metavar="DIR")
    gen.add_argument("--force", action="store_true", help="overwrite an existing pair")
    gen.set_defaults(func=_keys_generate)

    sync = commands.add_parser("sync", help="keep a device's gallery bundle current")
    ssub = sync.add_subparsers(dest="sync_command", metavar="ACTION", required=True)
    pull = ssub.add_parser(
        "pull",
        help="fetch, verify and atomically install the latest bundle from a publish URL",
        description="Conditional GET of URL/manifest.json; the delta or the full bundle is staged, "
        "verified (sizes, SHA-256, signature, model, policy), then swapped in; the "
        "previous bundle is kept. On any failure the current bundle stays.",
    )
    pull.add_argument("url", metavar="URL", help="publish folder URL (http(s)://... or file://...)")
    pull.add_argument(
        "--into", type=Path, required=True, metavar="DIR", help="device bundle store (current/, previous/)"
    )
    pull.add_argument("--public-key", type=Path, required=True, metavar="FILE")
    pull.add_argument("--model-digest", help="refuse bundles built for another embedder digest")
    pull.add_argument("--embedder", help="like --model-digest, read from this model's manifest in the model cache")
    add_model_dir(pull)
    pull.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="the device's policy (default: the built-in one, denying US-IL and people with no jurisdiction; "
        "the bundle's own applies too)",
    )
    pull.add_argument("--location", help="the device's jurisdiction, e.g. US-CA")
    pull.add_argument(
        "--gallery-id",
        metavar="ID",
        help="install only bundles of this gallery (the id `gallery build` printed); without it the store stays "
        "with the gallery of the bundle it holds. Use an https:// URL: whoever answers a plain http one chooses "
        "what you are offered",
    )
    pull.add_argument(
        "--purpose", type=argparse_purpose, help="install only bundles built for this purpose (e.g. identification)"
    )
    pull.add_argument("--watch", type=float, metavar="SECONDS", help="keep pulling every SECONDS (Ctrl-C stops)")
    pull.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="deadline for each request as a whole (a download gets its size at 16 KiB/s on top; default 30)",
    )
    pull.set_defaults(func=_sync_pull)

    rollback = ssub.add_parser(
        "rollback",
        help="make the previous bundle current again, and pin it: pulls install nothing newer until `sync unpin`",
    )
    rollback.add_argument("--into", type=Path, required=True, metavar="DIR", help="device bundle store")
    rollback.add_argument("--reason", default="rollback by an operator", help="recorded with the pin")
    rollback.set_defaults(func=_sync_rollback)
    unpin = ssub.add_parser("unpin", help="lift the pin a rollback set: the next pull installs the newest version")
    unpin.add_argument("--into", type=Path, required=True, metavar="DIR", help="device bundle store")
    unpin.set_defaults(func=_sync_unpin)
    status = ssub.add_parser("status", help="the store's current and previous bundles, its pin, its last pull")
    status.add_argument("--into", type=Path, required=True, metavar="DIR", help="device bundle store")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_sync_status)

    search = commands.add_parser(
        "search",
        help="who is this? search the faces of photos in a gallery bundle",
        description="Every face of each image (files, or folders searched recursively) against the gallery, "
        "models and gallery loaded once. An image's decision is its face with the best score at or above the "
        "threshold. A decision is a candidate for a person to check, never an identification.",
    )
    search.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files or folders of images")
    search.add_argument(
        "--gallery", type=Path, required=True, metavar="DIR", help="a bundle folder (or a sync store with current/)"
    )
    search.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="jurisdiction policy (default: the built-in one, denying US-IL and people with no jurisdiction; "
        "the bundle's own applies too)",
    )
    search.add_argument(
        "--jurisdiction",
        required=True,
        metavar="CODE",
        help="where the photos were taken (ISO 3166-2, e.g. US-CA): their faces are people there, so the policy "
        "decides on it before any face is detected; a denied or unknown place refuses the search",
    )
    search.add_argument("--box", type=_box, metavar="x1,y1,x2,y2", help="only the face in this box (one image only)")
    search.add_argument(
        "--top",
        type=_at_least(1),
        default=5,
        metavar="K",
        help="candidates shown per face, 1 or more (default 5); the decision is the best one's, however many are shown",
    )
    search.add_argument("--threshold", type=threshold_arg, help="cosine, -1 to 1 (default: the bundle's)")
    search.add_argument(
        "--public-key",
        type=Path,
        metavar="FILE",
        help="the key that signs your galleries (required: an unsigned or edited bundle is refused), except for a "
        "sync store, whose bundles are checked with the key `sync pull` verified them with",
    )
    search.add_argument(
        "--json",
        action="store_true",
        help="one JSON line per image: path, faces (box, quality, candidates, decision), the image's decision",
    )
    add_pipeline_options(search)
    search.set_defaults(func=_search)


def register_bench(benches: argparse._SubParsersAction) -> None:
    bench = benches.add_parser(
        "index",
        help="HNSW vs exact search: build time, memory, latency, mate recall",
        description="Synthetic unit vectors, each query with one mate in the gallery at about "
        "the match threshold's cosine; recall of that mate at 1 and 10 against "
        "exact search (numpy), p50/p99 latency, build time and memory.",
    )
    bench.add_argument(
        "--sizes", default="25000,100000", help="gallery sizes, comma-separated (e.g. 25000,100000,1000000)"
    )
    bench.add_argument("--dim", type=int, default=512)
    bench.add_argument("--queries", type=int, default=1000)
    bench.add_argument("--mate-cos", type=float, default=0.60, help="cosine of each query to its mate (default 0.60)")
    bench.add_argument(
        "--background-cos",
        type=float,
        default=0.0,
        help="mean cosine between unrelated vectors (0: isotropic; ~0.85 mimics dlib's crowding)",
    )
    bench.add_argument(
        "--impostor-sd",
        type=float,
        default=0.10,
        help="cosine spread of unrelated vectors (sets the spectrum decay; 0: isotropic worst case)",
    )
    bench.add_argument("--M", type=int, default=32)
    bench.add_argument("--ef-construction", type=int, default=200)
    bench.add_argument("--ef", default="128,256,512", help="ef values to measure, comma-separated (e.g. 32,64,128)")
    bench.add_argument("--threads", type=int, default=-1, help="build threads (default: all cores)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=_bench_index)


def _at_least(least: int) -> Callable[[str], int]:
    """argparse type: an integer of at least ``least`` (hnswlib crashes the process with M 0)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be {least} or more, got {value}")
        return value

    return parse


# -- gallery ---------------------------------------------------------------------------------------


def _made_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first. One line if it cannot be."""
    missing = [f for f in [folder, *folder.parents] if not f.exists()][::-1]
    made: list[Path] = []
    for f in missing:
        try:
            f.mkdir()
        except FileExistsError:
            continue
        except OSError as err:
            for done in reversed(made):
                _remove_if_empty(done)
            raise InputError(str(folder), f"cannot create this folder: {err.strerror or err}") from None
        made.append(f)
    if not folder.is_dir():
        raise InputError(str(folder), "exists and is not a folder")
    return made


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it holds nothing but empty folders (a work folder with a cache is kept: it resumes)."""
    if folder.is_dir() and not any(p.is_file() or p.is_symlink() for p in folder.rglob("*")):
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _output_folders(out: Path, work: Path) -> Iterator[None]:
    """Before any source is read: OUT's parent and the work folder can be made and written to (one line if not).
    A refused or failed build removes the folders it made that are still empty."""
    made: list[Path] = []
    parent = out.absolute().parent
    try:
        made += _made_dirs(parent)
        try:
            Path(tempfile.mkdtemp(prefix=f".{out.name}-probe-", dir=parent)).rmdir()
        except OSError as err:
            raise InputError(str(out), f"cannot write in {parent}: {err.strerror or err}") from None
        made += _made_dirs(work)
        yield
    except BaseException:
        for folder in reversed(made):
            _remove_if_empty(folder)
        raise


def _records(args: argparse.Namespace, work: Path):

    return open_source(
        args.source,
        work_dir=work,
        people=args.people,
        api_config=args.api_config,
        encoding=args.encoding,
        jurisdiction=args.jurisdiction,
    )


def _gallery_build(args: argparse.Namespace) -> int:

    work = args.work or args.out.with_name(args.out.name + ".work")
    check_build_options(args.threshold, args.target_fpir, args.bundle_version, args.accept_fpir)
    load_private_key(args.key)  # a bad key is said before any folder is made or photo fetched
    policy = _policy(args) or Policy.default()
    check_output_dir(args.out)  # before walking a source or downloading a photo
    with _output_folders(args.out, work):
        records = list(_records(args, work))
        report = build_gallery(
            records,
            args.out,
            args.key,
            open_pipeline(args, hint="THROUGHPUT"),
            policy,
            purpose=args.purpose,
            threshold=args.threshold,
            params=IndexParams(args.M, args.ef_construction, args.ef),
            work_dir=work,
            report_path=args.report,
            version=args.bundle_version,
            progress=not args.no_progress,
            **({"target_fpir": args.target_fpir} if args.target_fpir is not None else {}),
            max_pixels=args.max_pixels,
            accept_fpir=args.accept_fpir,
            gallery_id=args.gallery_id,
            accept_fnir=args.accept_fnir,
        )
    m = report.manifest
    if report.headline:  # up front: nothing enrolled because records have no jurisdiction
        print(report.headline)
    print(
        f"{args.out}: gallery {m.gallery_id} version {m.version}, {count(m.counts['persons'], 'person', 'people')}, "
        f"{count(m.counts['photos'], 'photo')}, model "
        f"{m.model.name}, threshold {m.threshold.value}, policy {m.policy.version}"
    )
    print(report.details_line)
    _say_calibration(m)
    return 0 if m.counts["photos"] else 1


def _say_calibration(manifest) -> None:
    """Say how the threshold was chosen and what it predicts; or that nothing calibrated it for this gallery."""
    print(describe(manifest.threshold.value, manifest.threshold.basis))
    if "target_fpir" in manifest.threshold.basis:
        return
    for problem in calibration_problems(manifest):
        print(f"note: {problem}")


def _gallery_update(args: argparse.Namespace) -> int:

    work = args.work or args.out.with_name(args.out.name + ".work")
    check_build_options(args.threshold, args.target_fpir, accept_fpir=args.accept_fpir)
    load_private_key(args.key)
    check_output_dir(args.out)
    with _output_folders(args.out, work):
        records = list(_records(args, work))
        report = update_gallery(
            args.gallery,
            records,
            args.out,
            args.key,
            open_pipeline(args, hint="THROUGHPUT"),
            _policy(args),
            public_key=args.public_key,
            only_listed=args.only_listed,
            remove=args.remove,
            withdraw=args.withdraw,
            reinstate=args.reinstate,
            threshold=args.threshold,
            work_dir=work,
            report_path=args.report,
            progress=not args.no_progress,
            target_fpir=args.target_fpir,
            max_pixels=args.max_pixels,
            accept_fpir=args.accept_fpir,
            gallery_id=args.gallery_id,
            accept_fnir=args.accept_fnir,
        )
    m = report.manifest
    assert m.delta is not None  # an update always carries its delta
    delta = sum(e.size for e in m.delta.files.values())
    full = sum(e.size for e in m.files.values())
    if report.headline:
        print(report.headline)
    print(
        f"{args.out}: gallery {m.gallery_id} version {m.version} (delta from {m.delta.from_version}: {delta} bytes, "
        f"full bundle {full} bytes), "
        f"{count(m.counts['persons'], 'person', 'people')}, {count(m.counts['photos'], 'photo')}"
    )
    print(report.details_line)
    _say_calibration(m)
    return 0


def _gallery_delta(args: argparse.Namespace) -> int:

    manifest, _ = read_manifest(args.bundle)
    if manifest.delta is None:
        print(f"{args.bundle}: version {manifest.version} is a full build (no delta)")
        return 1
    doc, _vectors = read_delta(args.bundle)
    info = {
        "version": manifest.version,
        "from_version": doc.from_version,
        "persons_upserted": len(doc.upsert_persons),
        "persons_removed": len(doc.remove_persons),
        "photos_added": len(doc.add_photos),
        "photos_removed": len(doc.remove_labels),
        "delta_bytes": sum(e.size for e in manifest.delta.files.values()),
        "full_bytes": sum(e.size for e in manifest.files.values()),
    }
    if args.json:
        print(json.dumps(info))
    else:
        print(
            f"{args.bundle}: version {info['from_version']} -> {info['version']}: "
            f"{count(info['persons_upserted'], 'person', 'people')} added "
            f"or updated, {info['persons_removed']} removed; {count(info['photos_added'], 'photo')} added, "
            f"{info['photos_removed']} removed; delta {info['delta_bytes']} bytes vs full {info['full_bytes']} bytes"
        )
    return 0


def _gallery_audit(args: argparse.Namespace) -> int:

    gallery = load_bundle(args.bundle, args.public_key, None, None)
    report = audit_gallery(gallery, args.threshold)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print("\n".join(report.lines()))
    return 0


def _gallery_report(args: argparse.Namespace) -> int:

    try:
        if args.report.suffix.lower() == ".json":
            rows = json.loads(args.report.read_text())["photos"]
        else:
            rows = list(csv.DictReader(args.report.read_text().splitlines()))
    except (OSError, ValueError, KeyError) as err:
        raise InputError(str(args.report), f"not a failure-to-enrol report ({err})") from None
    results = [
        PhotoResult(
            photo_id=r["photo_id"],
            person_id=r["person_id"],
            source=r.get("source", ""),
            status=r["status"],
            reason=r.get("reason") or None,
            detail=r.get("detail") or "",
            near_duplicate_of=r.get("near_duplicate_of") or None,
        )
        for r in rows
    ]
    print(summary_line(summarise(results)))
    for r in rows:
        if r["status"] != "enrolled":
            print(f"  {r['status']:8s} {r['reason']:20s} {r['photo_id']}  {r.get('detail', '')}")
    return 0


def _gallery_verify(args: argparse.Namespace) -> int:

    manifest, policy = verify_bundle(args.bundle, args.public_key, args.model_digest, _policy(args), args.location)
    print(
        f"{args.bundle}: OK: version {manifest.version}, {count(manifest.counts['persons'], 'person', 'people')}, "
        f"{count(manifest.counts['photos'], 'photo')}, model {manifest.model.name}, policy {policy.version}, key {manifest.key_id}"
    )
    return 0


def _gallery_publish(args: argparse.Namespace) -> int:

    target = publish(args.bundle, args.to, args.public_key)
    print(f"published {args.bundle} to {target}")
    return 0


def _keys_generate(args: argparse.Namespace) -> int:

    private, public = generate_keys(args.out, overwrite=args.force)
    print(f"private key (keep secret, sign bundles with it): {private}")
    print(f"public key (configure devices with it): {public}")
    return 0


# -- sync ------------------------------------------------------------------------------------------


def _sync_pull(args: argparse.Namespace) -> int:

    digest = args.model_digest
    if args.embedder:
        digest = ModelStore(args.model_dir).manifest(args.embedder).digest
    url = args.url
    if "://" not in url:
        raise ConfigError(f"{url}: give a URL (http://..., https://... or file://...)")
    store = BundleStore(args.into)
    puller = BundlePuller(
        url,
        store,
        args.public_key,
        digest,
        _policy(args),
        interval_s=args.watch or 300,
        location=args.location,
        timeout_s=args.timeout,
        gallery_id=args.gallery_id,
        purpose=args.purpose,
    )
    if args.watch:
        puller.start()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            puller.stop()
        return 0
    swapped = puller.pull_once(raise_errors=True)
    current = store.current_dir()
    pin = store.pinned()
    installed = store.current_manifest()
    offered = puller.published_version
    if swapped:
        print(f"installed new bundle: version {installed.version if installed else '?'} in {current}")
    elif pin is not None and installed is not None and offered is not None and offered > installed.version:
        print(
            f"pinned at version {installed.version} ({pin.get('reason')}, {pin.get('at')}): version {offered} is "
            f"published and was not installed; `lookout sync unpin --into {args.into}` to resume updates"
        )
    else:
        print(f"up to date: version {installed.version if installed else '?'} in {current}")
    return 0


def _sync_rollback(args: argparse.Namespace) -> int:
    store = BundleStore(args.into)
    was = store.current_manifest()
    if store.rollback(args.reason) is None:
        raise InputError(str(args.into), "no previous bundle to roll back to")
    now = store.current_manifest()
    print(
        f"rolled back to version {now.version if now else '?'} (was {was.version if was else '?'}); pinned: "
        f"pulls install nothing newer until `lookout sync unpin --into {args.into}`"
    )
    return 0


def _sync_unpin(args: argparse.Namespace) -> int:
    pin = BundleStore(args.into).unpin()
    print(f"unpinned (was pinned at version {pin.get('version')})" if pin else "not pinned")
    return 0


def _sync_status(args: argparse.Namespace) -> int:
    if not (args.into / "versions").is_dir():
        raise InputError(str(args.into), "not a bundle store (no versions/ folder)")
    status = BundleStore(args.into).status()
    if args.json:
        print(json.dumps(status))
        return 0

    def line(info: dict | None) -> str:
        if info is None:
            return "none"
        if "error" in info:
            return info["error"]
        return (
            f"version {info['version']} ({count(info['persons'] or 0, 'person', 'people')}, "
            f"built {info['created']}, gallery {info.get('gallery_id') or 'none (built before gallery ids)'}) "
            f"in {info['dir']}"
        )

    print(f"store {status['store']}")
    print(f"  current:  {line(status['current'])}")
    print(f"  previous: {line(status['previous'])}")
    pin = status["pinned"]
    if pin:
        print(
            f"  PINNED at version {pin.get('version')} since {pin.get('at')} ({pin.get('reason')}; was "
            f"{pin.get('from_version')}): pulls install nothing newer until `lookout sync unpin --into {args.into}`"
        )
    else:
        print("  not pinned")
    last = status["last_pull"]
    if last.get("url"):
        print(
            f"  last pull: {last['url']} offered version {last.get('published_version', '?')} "
            f"at {last.get('checked_at', '?')}"
        )
    return 0


# -- search ----------------------------------------------------------------------------------------


def _say_search_threshold(threshold: float, gallery) -> None:
    """A threshold given to `search` in place of the bundle's: one line (stderr) with the FPIR it predicts at this
    gallery's size from the model's calibration, loud when far above the bundle's target."""
    m = gallery.manifest
    target = float(m.threshold.basis.get("target_fpir", DEFAULT_TARGET_FPIR))
    basis = predict_at(
        threshold, m.model.name, None, m.counts.get("persons", 0), m.counts.get("photos", 0), None, target
    )
    predicted = basis.get("predicted_fpir")
    if predicted is None:
        return
    far = operator_threshold_problem(basis)
    print(
        f"{'warning' if far else 'note'}: --threshold {threshold:g} instead of the bundle's {m.threshold.value:g}: "
        f"predicted FPIR {predicted:.2g} at {basis['gallery_persons']} people / {basis['gallery_photos']} photos "
        f"(target {target:g})" + ("; far above the target: expect many wrong candidates marked *" if far else ""),
        file=sys.stderr,
    )


def _search(args: argparse.Namespace) -> int:
    bundle, public_key = args.gallery, args.public_key
    if BundleStore.is_store(bundle):  # its current bundle; the key comes from outside the store (attack A28)
        bundle = (bundle / "current").resolve()
    if public_key is None:  # a key kept beside what it checks can be swapped with it: always the operator's own
        raise InputError("--public-key", "required: the key that signs your galleries (a bundle or a sync store)")
    if args.box is not None and (len(args.images) != 1 or args.images[0].is_dir()):
        raise InputError("--box", "applies to one image, not to several or a folder")
    pipeline = open_pipeline(args)
    policy = _policy(args)
    gallery = load_bundle(bundle, public_key, pipeline.embedder.digest, policy)  # policy None: built-in
    check_photos_taken_in(policy or Policy.default(), args.jurisdiction, gallery.purpose)  # before any face (A40)
    threshold = gallery.threshold if args.threshold is None else args.threshold
    failed = total = 0
    if not args.json:
        print(f"gallery {bundle} v{gallery.version}, {gallery.count_persons} people, threshold {threshold:.3f}")
    if args.threshold is not None:
        _say_search_threshold(args.threshold, gallery)
    found = search_paths(
        args.images, pipeline, gallery, top=args.top, threshold=args.threshold, box=args.box, max_pixels=args.max_pixels
    )
    for result in found:
        failed += result.error is not None
        total += 1
        if args.json:
            doc = result.to_dict()
            doc.update(image=str(result.path), gallery=str(bundle), version=gallery.version, threshold=threshold)
            print(json.dumps(doc), flush=True)
            continue
        if result.error is not None:
            print(f"{result.path}: {result.error}")
            continue
        print(f"{result.path}: {len(result.faces)} face(s)")
        for r in result.faces:
            box = ",".join(f"{v:.0f}" for v in r.face.box)
            verdict = f"match {r.match.name} ({r.match.person_id})" if r.match else "no match"
            poor = f" [quality: {', '.join(r.quality.reasons)}]" if not r.quality.ok else ""
            print(f"  face [{box}]: {verdict}{poor}")
            for c in r.candidates:
                mark = "*" if c.score >= threshold else " "
                print(f"    {mark} {c.score:.3f}  {c.name}  ({c.person_id}, photo {c.photo_id})")
    return 1 if failed == total else 0  # some images searched: 0; every one failed (or none found): 1


def _bench_index(args: argparse.Namespace) -> int:

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    efs = [int(e) for e in args.ef.split(",")]
    run_index_bench(
        sizes,
        dim=args.dim,
        queries=args.queries,
        mate_cos=args.mate_cos,
        background_cos=args.background_cos,
        M=args.M,
        ef_construction=args.ef_construction,
        efs=efs,
        threads=args.threads,
        as_json=args.json,
        out=sys.stdout,
        impostor_sd=args.impostor_sd,
    )
    return 0
