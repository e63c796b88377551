"""Command-line options for the model store and the face pipeline, shared by every part's subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from lookout.face.detector import DetectorConfig
from lookout.face.image_io import MAX_PIXELS
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.model_store.catalog import DEFAULT_DETECTOR, DEFAULT_EMBEDDER


def add_model_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model cache (default: $LOOKOUT_MODEL_DIR or the user cache dir, e.g. ~/.cache/lookout/models)",
    )


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    add_model_dir(parser)
    parser.add_argument("--device", default="AUTO", help="OpenVINO device: AUTO (default), CPU, GPU, NPU")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"detector model (default {DEFAULT_DETECTOR})")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help=f"embedder model (default {DEFAULT_EMBEDDER})")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default="auto",
        help="the embedder's number format: auto (default) = what `lookout models precision` measured best on this "
        "device, FP32 until measured",
    )
    parser.add_argument(
        "--tile",
        type=tile_px,
        default=0,
        metavar="PX",
        help="also detect in overlapping square tiles of PX pixels, for small faces in large frames (0: off)",
    )
    add_image_limit(parser)


def tile_px(text: str) -> int:
    """argparse type for ``--tile``: 0 (off) or a tile size in pixels."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a tile size in pixels, or 0 for none; got {value}")
    return value


def add_image_limit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        metavar="N",
        help=f"refuse images larger than this many pixels, read from the file header before decoding "
        f"(default {MAX_PIXELS:,})",
    )


def open_pipeline(args: argparse.Namespace, embedder: str | None = None, hint: str = "LATENCY") -> FacePipeline:
    """The pipeline the options of ``add_pipeline_options`` describe (``embedder`` overrides --embedder)."""
    return FacePipeline.open(
        PipelineConfig(
            model_dir=args.model_dir,
            device=args.device,
            detector=args.detector,
            embedder=embedder or args.embedder,
            detection=DetectorConfig(tile=args.tile),
            embedder_hint=hint,
            precision=getattr(args, "precision", "auto"),
        )
    )
