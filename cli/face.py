"""`lookout detect` and `lookout embed`, and `lookout bench models`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from lookout.errors import InputError
from lookout.face.annotate import draw_faces
from lookout.face.bench import run_model_bench
from lookout.face.engine import InferenceEngine
from lookout.face.image_io import read_image
from lookout.face.options import add_pipeline_options, open_pipeline
from lookout.face.types import AnalyzedFace
from lookout.gallery.policy import Policy, check_photos_taken_in
from lookout.model_store.catalog import ALL_MODELS
from lookout.model_store.precision import records
from lookout.model_store.store import ModelStore
from lookout.models import precision
from lookout.models.cli import DEFAULT_FACES


def register(commands: argparse._SubParsersAction) -> None:
    detect = commands.add_parser("detect", help="find faces in images: box, score, keypoints, quality")
    detect.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    detect.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    detect.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT.png",
        help="draw the faces; with several images, OUT-<image name>.png for each",
    )
    _add_photo_place(detect)
    add_pipeline_options(detect)
    detect.set_defaults(func=_detect)

    embed = commands.add_parser("embed", help="print the embedding of each face in an image")
    embed.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    embed.add_argument("--json", action="store_true", help="JSON output (default: a short summary per face)")
    _add_photo_place(embed)
    add_pipeline_options(embed)
    embed.set_defaults(func=_embed)


def _add_photo_place(parser: argparse.ArgumentParser) -> None:
    """Face geometry and templates are biometric identifiers: the policy decides on where the photos were taken."""
    parser.add_argument(
        "--jurisdiction",
        required=True,
        metavar="CODE",
        help="where the photos were taken (ISO 3166-2, e.g. US-CA): their faces are people there, so the policy "
        "decides on it before any face is looked for; a denied or unknown place refuses",
    )
    parser.add_argument(
        "--policy", type=Path, metavar="FILE", help="jurisdiction policy (default: the built-in one, denying US-IL)"
    )


def register_bench(benches: argparse._SubParsersAction) -> None:
    bench = benches.add_parser("models", help="detection and embedding speed on this machine")
    bench.add_argument("--runs", type=int, default=100, help="timed runs per case (after warm-up)")
    bench.add_argument(
        "--faces",
        type=Path,
        nargs="+",
        default=None,
        metavar="FOLDER",
        help="photos of real faces for the precision comparison (default: ../shared/data/faces-dev); "
        "every embedder fetched is run at FP32, BF16 and INT8 side by side, as `lookout models precision` does",
    )
    bench.add_argument("--no-precision", action="store_true", help="skip the precision comparison")
    add_pipeline_options(bench)
    bench.set_defaults(func=_bench)


def _each_image(paths: list[Path], max_pixels: int):
    """Yield (path, image) for readable images; report unreadable ones on stderr and count them."""
    failures = 0
    for path in paths:
        try:
            yield path, read_image(path, max_pixels)
        except InputError as err:
            failures += 1
            print(f"lookout: {err}", file=sys.stderr)
    _each_image.failures = failures  # type: ignore[attr-defined]


def _run(args: argparse.Namespace, embed: str, show) -> int:
    policy = Policy.load(args.policy) if args.policy else Policy.default()
    check_photos_taken_in(policy, args.jurisdiction)  # before the models are even opened (attack A46)
    pipeline = open_pipeline(args)
    many = len(args.images) > 1
    for path, image in _each_image(args.images, args.max_pixels):
        faces = pipeline.analyze(image, embed=embed)
        show(path, image, faces)
        if getattr(args, "annotate", None):
            out = args.annotate.with_name(f"{args.annotate.stem}-{path.stem}.png") if many else args.annotate
            cv2.imwrite(str(out), draw_faces(image, faces))
    return 1 if _each_image.failures else 0  # type: ignore[attr-defined]


def _detect(args: argparse.Namespace) -> int:
    def show(path: Path, image, faces: list[AnalyzedFace]) -> None:
        if args.json:
            doc = {
                "image": str(path),
                "width": image.shape[1],
                "height": image.shape[0],
                "faces": [{**f.face.to_dict(), "quality": f.quality.to_dict()} for f in faces],
            }
            print(json.dumps(doc))
            return
        print(f"{path}: {len(faces)} face(s)")
        for f in faces:
            box = ",".join(f"{v:.0f}" for v in f.face.box)
            verdict = "ok" if f.quality.ok else "poor: " + ",".join(f.quality.reasons)
            print(f"  box [{box}] score {f.face.score:.2f} quality {verdict}")

    return _run(args, "none", show)


def _embed(args: argparse.Namespace) -> int:
    def show(path: Path, image, faces: list[AnalyzedFace]) -> None:
        if args.json:
            doc = {
                "image": str(path),
                "faces": [
                    {
                        **f.face.to_dict(),
                        "quality": f.quality.to_dict(),
                        "embedding": [round(float(v), 6) for v in _vector(f)],
                    }
                    for f in faces
                ],
            }
            print(json.dumps(doc))
            return
        for f in faces:
            vector = _vector(f)
            head = " ".join(f"{v:+.3f}" for v in vector[:6])
            print(f"{path}: box [{','.join(f'{v:.0f}' for v in f.face.box)}] {len(vector)}-d [{head} ...]")

    return _run(args, "all", show)


def _bench(args: argparse.Namespace) -> int:
    pipeline = open_pipeline(args)
    run_model_bench(pipeline, args.runs)
    if args.no_precision:
        return 0
    folders = args.faces or [DEFAULT_FACES]
    if not all(f.is_dir() for f in folders):
        print(f"(precision comparison skipped: no faces at {', '.join(map(str, folders))}; give --faces)")
        return 0
    store = ModelStore(args.model_dir)
    images = precision.image_files(folders)
    source = ", ".join(str(f) for f in folders) + f" ({len(images)} photos)"
    engine = InferenceEngine(args.device)
    print("\nprecision, side by side (what `lookout models precision` records; nothing recorded here):")
    for name in [n for n, spec in ALL_MODELS.items() if spec.kind == "embedder" and store.status(n).ok]:
        chips = precision.real_face_chips(open_pipeline(args, embedder=name), images)
        result = precision.measure(store, name, engine, chips, faces_source=source)
        recorded = records(store.manifest(name)).get(result.device.upper())
        print("\n".join(precision.table(name, result)))
        print(f"  recorded for this device: {recorded.chosen if recorded else 'nothing yet (runs at fp32)'}")
    return 0


def _vector(face: AnalyzedFace) -> np.ndarray:
    """The embedding `lookout embed` asked for (it embeds every face)."""
    if face.embedding is None:
        raise AssertionError("lookout embed analyses with embed='all'")
    return face.embedding
