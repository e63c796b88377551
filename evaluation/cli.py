"""`lookout eval`, `lookout calibrate`, `lookout models quantize` and `lookout bench embedders`."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from lookout.errors import InputError
from lookout.evaluation.bundles import apply_calibration, bundle_vectors
from lookout.evaluation.calibration import calibrate, operator_view, write_calibration
from lookout.evaluation.datasets import PhotoCapture, aligned_chips, embed_protocol, folder_protocol, image_files
from lookout.evaluation.harness import DEFAULT_PASSERS_BY, DEFAULT_TARGET_FPIR, calibrate_on, run_evaluation
from lookout.evaluation.openset import OpenSet, person_scores
from lookout.evaluation.report import summary_lines, write_comparison, write_report
from lookout.evaluation.scale import FACES_SCALE_NOISY, embed_set, measure, table
from lookout.evaluation.verification import evaluate, read_pairs
from lookout.face.bench import describe, timings_ms
from lookout.face.embedder import FaceEmbedder
from lookout.face.engine import InferenceEngine
from lookout.face.options import add_model_dir, add_pipeline_options, open_pipeline
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.gallery.threshold import threshold_arg
from lookout.log import get_logger
from lookout.model_store.catalog import ALL_MODELS
from lookout.model_store.store import ModelStore
from lookout.models.install import install
from lookout.models.quantize import int8_name, precision_of, quantize_embedder

log = get_logger(__name__)
DEFAULT_SCALE_DATA = (
    Path(os.environ.get("LOOKOUT_SHARED_DIR", Path(__file__).resolve().parents[1].parent / "shared"))
    / "data"
    / "faces-scale"
)
SCALE_EMBEDDERS = ("face-reidentification-retail-0095", "dlib-resnet", "facenet")


def register(commands: argparse._SubParsersAction) -> None:
    ev = commands.add_parser("eval", help="measure accuracy on a labelled face set: JSON figures and a readable report")
    ev.add_argument(
        "data",
        type=Path,
        help="folder laid out like faces-dev: one folder of photos per person, "
        "loose photos of people not enrolled, optional groups.csv",
    )
    ev.add_argument("--out", type=Path, required=True, help="folder for eval.json, report.md and the plots")
    ev.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="which photo (sorted order) of each person is held out as a probe (default 0, the first)",
    )
    ev.add_argument("--labels", type=Path, help="CSV with an 'identity' or 'image' column and label columns")
    ev.add_argument(
        "--group-by",
        action="append",
        default=[],
        metavar="COLUMN",
        help="report figures per value of this label column (repeatable; 'capture' is built in)",
    )
    ev.add_argument("--pairs", type=Path, help="also run 1:1 verification on a pairs file (image_a,image_b,same)")
    ev.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="EMBEDDER",
        help="run the same evaluation with another embedder too (e.g. facenet-int8) and compare",
    )
    _add_threshold_options(ev)
    ev.add_argument(
        "--threshold", type=threshold_arg, help="evaluate at this threshold (default: calibrated on the data)"
    )
    ev.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples of people for intervals")
    ev.add_argument(
        "--no-quality-gate",
        action="store_true",
        help="embed faces that fail the quality gates too (the device skips them)",
    )
    add_pipeline_options(ev)
    ev.set_defaults(func=_eval, device="CPU")

    cal = commands.add_parser(
        "calibrate",
        help="choose the threshold for a target false-alert rate at a gallery's size, and write it into the bundle",
    )
    src = cal.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", type=Path, help="gallery bundle folder to calibrate (and write into)")
    src.add_argument("--data", type=Path, help="folder laid out like faces-dev: calibrate for its identity folders")
    cal.add_argument("--nonmated", type=Path, help="folder of photos of people NOT in the gallery (with --bundle)")
    cal.add_argument("--private-key", type=Path, help="bundle signing key: write the threshold into the bundle")
    cal.add_argument(
        "--public-key", type=Path, help="the key that signs the gallery (needed with --bundle: checked first)"
    )
    cal.add_argument("--out", type=Path, help="also write the calibration as JSON here")
    _add_threshold_options(cal)
    add_pipeline_options(cal)
    cal.set_defaults(func=_calibrate, device="CPU")


def register_quantize(models: argparse._SubParsersAction) -> None:
    """Adds `lookout models quantize` to the `models` actions (wired in lookout.cli.main)."""
    qz = models.add_parser("quantize", help="make an INT8 version of an embedder with NNCF, calibrated on faces")
    qz.add_argument("--model", default="dlib-resnet", help="embedder to quantise (default dlib-resnet)")
    qz.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        metavar="FOLDER",
        help="folders of face photos (searched recursively); keep evaluation probes out of them",
    )
    qz.add_argument("--augment", type=int, default=3, help="jittered copies of each face added to calibration")
    qz.add_argument("--device", default="CPU", help="OpenVINO device for the agreement check")
    add_model_dir(qz)
    qz.set_defaults(func=quantize_command)


def register_bench(benches: argparse._SubParsersAction) -> None:
    bench = benches.add_parser("embedders", help="FP32 against INT8 speed for every embedder in the model store")
    bench.add_argument("--runs", type=int, default=100, help="timed runs at batch 1 (batch 8: a quarter)")
    bench.add_argument("--device", default="CPU")
    add_model_dir(bench)
    bench.set_defaults(func=_bench)

    acc = benches.add_parser(
        "accuracy",
        help="open-set accuracy at gallery scale, per embedder side by side (rank-1, FNIR/FPIR, FMR, FPIR at N)",
        description="Strangers held out, k photos enrolled per person under the build's enrolment rule, "
        "several random splits; figures at the threshold `gallery build` picks, at the threshold that meets "
        "the target FPIR on the strangers, and extrapolated to a gallery of N people (docs/evaluation.md).",
    )
    acc.add_argument(
        "data",
        type=Path,
        nargs="?",
        default=DEFAULT_SCALE_DATA,
        help=f"one folder of photos per person (default {DEFAULT_SCALE_DATA})",
    )
    acc.add_argument("--embedders", default=",".join(SCALE_EMBEDDERS), help="comma-separated embedders to compare")
    acc.add_argument("--splits", type=int, default=5, help="random splits (default 5)")
    acc.add_argument("--enrol", type=int, default=1, metavar="K", help="photos enrolled per person (default 1)")
    acc.add_argument("--target-fpir", type=float, default=0.01, help="target FPIR (default 0.01)")
    acc.add_argument("--gallery-size", type=int, default=14_400, metavar="N", help="N to extrapolate to (14,400)")
    acc.add_argument(
        "--photos-per-person", type=float, default=24_600 / 14_400, help="photos per person at N (NamUs: 1.71)"
    )
    acc.add_argument("--cache", type=Path, default=None, metavar="DIR", help="embeddings cache (evaluation data)")
    acc.add_argument(
        "--exclude",
        default=None,
        metavar="LABELS",
        help="comma-separated person folders to leave out (default for faces-scale: its 9 noisy labels)",
    )
    acc.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON")
    add_pipeline_options(acc)
    acc.set_defaults(func=_bench_accuracy)


def _add_threshold_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target-fpir",
        type=float,
        default=DEFAULT_TARGET_FPIR,
        help=f"false alerts per stranger searched to calibrate for (default {DEFAULT_TARGET_FPIR:g})",
    )
    p.add_argument(
        "--passers-by",
        type=float,
        default=DEFAULT_PASSERS_BY,
        help=f"people passing one camera per hour, to state false alerts per hour (default {DEFAULT_PASSERS_BY:g})",
    )


def _open(args: argparse.Namespace, embedder: str | None = None):
    return open_pipeline(args, embedder, hint="THROUGHPUT")


# -- eval -------------------------------------------------------------------------------------------


def evaluate_folder(args: argparse.Namespace, embedder: str, out: Path) -> dict:

    pipeline = _open(args, embedder)
    protocol = folder_protocol(args.data, args.holdout, args.labels)
    data = embed_protocol(protocol, pipeline, quality_gate=not args.no_quality_gate)
    verification = run_pairs(args.pairs, pipeline, args.bootstrap) if args.pairs else None
    doc = run_evaluation(
        data,
        threshold=args.threshold,
        target_fpir=args.target_fpir,
        group_by=["capture", *args.group_by],
        passers_by=args.passers_by,
        verification=verification,
        n_boot=args.bootstrap,
        precision=precision_of(pipeline.embedder.manifest),
        dataset=str(args.data),
    )
    doc["speed"] = embed_speed(pipeline)
    written = write_report(doc, out)
    return {"doc": doc, "written": written}


def _eval(args: argparse.Namespace) -> int:

    runs = {args.embedder: evaluate_folder(args, args.embedder, args.out)}
    for name in args.also:
        runs[name] = evaluate_folder(args, name, args.out / name)
    for run in runs.values():
        print("\n".join(summary_lines(run["doc"])))
        print(f"report: {run['written']['markdown']}   figures: {run['written']['json']}\n")
    if len(runs) > 1:
        path = write_comparison([r["doc"] for r in runs.values()], args.out)
        print(f"comparison: {path}")
    return 0


def run_pairs(pairs_file: Path, pipeline, n_boot: int) -> dict:
    """1:1 verification figures for a pairs file; each image's largest face."""

    pairs = read_pairs(pairs_file)
    worker = PhotoCapture(pipeline, quality_gate=False)
    vectors: dict[Path, np.ndarray | None] = {}
    for image in {p for pair in pairs for p in (pair.image_a, pair.image_b)}:
        chip = worker.capture(image, "", image.name)[1]
        vectors[image] = None if chip is None else pipeline.embed(chip[None])[0]
    scores, same, people, failures = [], [], [], 0
    for pair in pairs:
        a, b = vectors[pair.image_a], vectors[pair.image_b]
        if a is None or b is None:
            failures += 1
            continue
        scores.append(float(a @ b))
        same.append(pair.same)
        people.append(pair.person_a)
    doc = evaluate(np.asarray(scores), np.asarray(same, bool), people, failures, n_boot=n_boot)
    doc["pairs_file"] = str(pairs_file)
    return doc


def embed_speed(pipeline: FacePipeline, runs: int = 30) -> dict[str, Any]:
    """Embedding time per face at batch 1 and batch 8, measured now (the CPU may be shared: see load)."""

    emb = pipeline.embedder
    out: dict[str, Any] = {"load_1min": round(os.getloadavg()[0], 2)}
    for batch in (1, 8):
        chips = np.random.default_rng(1).integers(0, 256, (batch, emb.chip_size[1], emb.chip_size[0], 3), np.uint8)
        ms = timings_ms(partial(emb.embed, chips), runs if batch == 1 else max(8, runs // 4), warmup=3)
        out[f"batch{batch}"] = {
            "median_ms": float(np.median(ms)),
            "p95_ms": float(np.percentile(ms, 95)),
            "ms_per_face": float(np.median(ms) / batch),
            "faces_per_s": float(1000 * batch / np.median(ms)),
        }
    return out


# -- calibrate ---------------------------------------------------------------------------------------


def _calibrate(args: argparse.Namespace) -> int:

    if args.data:
        pipeline = _open(args)
        data = embed_protocol(folder_protocol(args.data), pipeline)
        cal = calibrate_on(data, args.target_fpir, precision_of(pipeline.embedder.manifest))
    else:
        if not args.nonmated:
            raise InputError("lookout calibrate", "--bundle needs --nonmated FOLDER (photos of people not enrolled)")
        manifest, persons, vectors, owner = bundle_vectors(args.bundle, args.public_key)
        pipeline = _open(args, manifest.model.name)
        if pipeline.embedder.digest != manifest.model.digest:
            raise InputError(
                str(args.bundle),
                f"built with {manifest.model.name} {manifest.model.digest[:12]}, "
                f"the local model is {pipeline.embedder.digest[:12]}",
            )
        worker = PhotoCapture(pipeline, quality_gate=True)
        chips = [c for c in (worker.capture(p, "", p.name)[1] for p in image_files(args.nonmated)) if c is not None]
        if not chips:
            raise InputError(str(args.nonmated), "no usable face in any photo")
        probes = pipeline.embed(np.stack(chips))
        scores = person_scores(probes, vectors, owner, len(persons))
        search = OpenSet(
            scores, np.full(len(probes), -1), np.ones(len(probes), bool), [str(i) for i in range(len(probes))]
        )
        cal = calibrate(
            search.nonmated_top_scores(),
            search.impostor_scores(),
            len(persons),
            args.target_fpir,
            manifest.model.digest,
            manifest.model.name,
            precision_of(pipeline.embedder.manifest),
        )
    view = operator_view(cal.expected_fpir if cal.expected_fpir is not None else cal.target_fpir, args.passers_by)
    print(
        f"threshold {cal.threshold:.4f} for FPIR {cal.target_fpir:g} at {cal.gallery_size} people "
        f"({cal.method}, {cal.probe_count} scores, model {cal.model_name} {cal.precision})"
    )
    for note in cal.notes:
        print(f"  note: {note}")
    print(f"  {view['text']}")
    print("  Every alert is a candidate for a person to review, not an identification.")
    if args.out:
        print(f"calibration: {write_calibration(cal, args.out)}")
    if args.bundle:
        if args.private_key:
            updated = apply_calibration(args.bundle, cal, args.private_key, args.public_key)
            print(
                f"bundle {args.bundle}: threshold {updated.threshold.value:.4f} written, now version {updated.version}"
            )
        else:
            print("bundle not changed: give --private-key to write the threshold into it", file=sys.stderr)
    return 0


# -- quantize, bench ------------------------------------------------------------------------------


def quantize_command(args: argparse.Namespace) -> int:

    store = ModelStore(args.model_dir)
    install(store, args.model)
    config = PipelineConfig(model_dir=store.root, device=args.device, embedder=args.model)
    fp32 = FacePipeline.open(config)
    images = [p for folder in args.data for p in image_files(folder)]
    if not images:
        raise InputError(" ".join(map(str, args.data)), "no photos")
    chips = aligned_chips(images, fp32)
    manifest = quantize_embedder(
        store, args.model, chips, source=", ".join(p.name for p in args.data), augment=args.augment
    )
    int8 = FacePipeline.open(PipelineConfig(model_dir=store.root, device=args.device, embedder=int8_name(args.model)))
    cos = (fp32.embed(chips) * int8.embed(chips)).sum(1)
    print(f"{manifest.name}: ready (digest {manifest.digest[:12]}) in {store.folder(manifest.name)}")
    print(
        f"  calibrated on {len(chips)} aligned faces from {len(images)} photos (+{args.augment} jittered copies each)"
    )
    print(f"  agreement with FP32 on those faces: cosine mean {cos.mean():.4f}, min {cos.min():.4f}")
    print(f"  next: lookout eval DATA --out DIR --embedder {args.model} --also {manifest.name}")
    return 0


def _bench_accuracy(args: argparse.Namespace) -> int:
    """`lookout bench accuracy`: every embedder on the same faces, the same splits, side by side."""
    if not args.data.is_dir():
        raise InputError(str(args.data), "no such folder (faces-scale lives in ../shared/data/faces-scale)")
    names = [n.strip() for n in args.embedders.split(",") if n.strip()]
    if args.exclude is None:
        exclude = frozenset(FACES_SCALE_NOISY) if args.data.name == "faces-scale" else frozenset()
    else:
        exclude = frozenset(x.strip() for x in args.exclude.split(",") if x.strip())
    cache = args.cache or Path(platformdirs.user_cache_dir("lookout")) / "bench-accuracy"
    figures = []
    for name in names:
        pipeline = _open(args, name)
        data = embed_set(args.data, pipeline, cache, _counter(name), exclude)
        figures.append(
            measure(
                data,
                pipeline.embedder.name,
                pipeline.embedder.manifest.extra,
                args.splits,
                args.enrol,
                args.target_fpir,
                args.gallery_size,
                args.photos_per_person,
            )
        )
    print(
        f"{args.data}: {len(data.people)} people, {len(data.photo_person)} photos"
        + (f" ({len(exclude)} labels left out: {', '.join(sorted(exclude))})" if exclude else "")
        + "; "
        f"{args.splits} splits, 1/3 of the people strangers, {args.enrol} photo(s) enrolled per person; "
        f"target FPIR {args.target_fpir:g}; N = {args.gallery_size:,} people x {args.photos_per_person:.2f} photos"
    )
    print("\n".join(table(figures)))
    print(
        "* threshold beyond the model's measured FMR (extrapolated). + no different-person pair of this set "
        "reached it: FPIR from the model's calibration tail. FPIR at N = 1 - (1 - FMR)^photos. Own-score rule at N: "
        "the threshold a gallery of N people like this set's would choose from its own scores (bound, safety "
        "factor), projected from every subject face of the set; > it rests on less than one photo of the set "
        "(a lower bound). FP32 on CPU."
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=1))
    return 0


def _counter(what: str) -> Callable[[], None]:
    """A progress step that logs every 200 photos (embedding a set takes minutes)."""
    done = [0]

    def step() -> None:
        done[0] += 1
        if done[0] % 200 == 0:
            log.info("bench.progress", embedder=what, photos=done[0])

    return step


def _bench(args: argparse.Namespace) -> int:

    store = ModelStore(args.model_dir)
    names = [n for n, s in ALL_MODELS.items() if s.kind == "embedder" and store.status(n).ok] + store.derived_models()
    if not names:
        raise InputError(str(store.root), "no embedder fetched: run `lookout models fetch`")
    engine = InferenceEngine(args.device)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f} (a shared CPU slows every figure)"
    )
    for name in sorted(names):
        model, manifest = store.read_model(name)
        emb = FaceEmbedder(model, manifest, engine, hint="LATENCY")
        precision = manifest.extra.get("precision", "fp32")
        for batch in (1, 8):
            chips = np.random.default_rng(1).integers(0, 256, (batch, emb.chip_size[1], emb.chip_size[0], 3), np.uint8)
            ms = timings_ms(partial(emb.embed, chips), args.runs if batch == 1 else max(10, args.runs // 4))
            print(
                describe(f"{name} ({precision}) batch {batch}", ms, per=batch)
                + "  faces"
                + f"   {np.median(ms) / batch:6.2f} ms/face"
            )
    return 0


__all__ = ["register", "register_bench"]
