"""`lookout demo`: recognise people end to end on built-in data.

With ``../shared/data/faces-dev`` present: enrol its identity folders, then
name the faces in its group photos and its strangers' photos. Without it:
enrol the two faces that ship in PyPI packages (matplotlib's Grace Hopper,
scikit-image's astronaut) and find them in altered copies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from lookout.cli_options import add_pipeline_options
from lookout.face.image_io import read_image
from lookout.face.pipeline import FacePipeline, PipelineConfig

DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces-dev"


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="recognise people end to end on built-in data")
    demo.add_argument("--faces-dev", type=Path, default=DEFAULT_SHARED, help="faces-dev folder (default: ../shared)")
    demo.add_argument("--threshold", type=float, default=None,
                      help="cosine needed to name someone (default: the embedder's own default threshold)")
    add_pipeline_options(demo)
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    pipeline = FacePipeline.open(PipelineConfig(model_dir=args.model_dir, device=args.device,
                                                detector=args.detector, embedder=args.embedder))
    if (args.faces_dev / "groups.csv").exists():
        gallery = _enrol_folders(pipeline, args.faces_dev)
        probes = sorted(args.faces_dev.glob("bbt*.jpg")) + sorted(p for p in args.faces_dev.glob("*.jpg")
                                                                if not p.name.startswith("bbt"))
        scenes = [(p.name, read_image(p)) for p in probes]
    else:
        print(f"(no faces-dev at {args.faces_dev}: using the faces shipped in matplotlib and scikit-image)")
        gallery, scenes = _builtin_gallery_and_scenes(pipeline)
    threshold = args.threshold or pipeline.embedder.manifest.extra["default_threshold"]
    print(f"gallery: {len(gallery)} people, embedder {pipeline.embedder.name}, threshold {threshold}")
    for name, image in scenes:
        _recognise(pipeline, gallery, name, image, threshold)
    return 0


def _enrol_folders(pipeline: FacePipeline, root: Path) -> dict[str, np.ndarray]:
    gallery = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        vectors = [f.embedding for path in sorted(folder.glob("*.png")) for f in pipeline.analyze(read_image(path))[:1]]
        gallery[folder.name] = np.stack(vectors)
    return gallery


def _builtin_gallery_and_scenes(pipeline: FacePipeline):
    import matplotlib
    from skimage import data

    grace = read_image(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    eileen = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    gallery = {name: np.stack([pipeline.analyze(im)[0].embedding]) for name, im in
               (("grace_hopper", grace), ("eileen_collins", eileen))}
    scene = np.full((720, 1280, 3), 40, np.uint8)
    scene[60:660, 80:592] = cv2.flip(grace, 1)
    scene[200:456, 800:1056] = cv2.resize(eileen, (256, 256))
    return gallery, [("collage (flipped Grace Hopper, half-size astronaut)", scene),
                     ("coffee (no one)", cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))]


def _recognise(pipeline: FacePipeline, gallery: dict[str, np.ndarray], name: str, image: np.ndarray,
               threshold: float) -> None:
    faces = pipeline.analyze(image)
    print(f"{name}: {len(faces)} face(s)")
    for analyzed in faces:
        if not analyzed.quality.ok:
            box = ",".join(str(int(v)) for v in analyzed.face.box)
            print(f"  at [{box}]: not searched, poor quality ({', '.join(analyzed.quality.reasons)})")
            continue
        scores = {person: float((vectors @ analyzed.embedding).max()) for person, vectors in gallery.items()}
        best = max(scores, key=scores.get)
        x1, y1, x2, y2 = (int(v) for v in analyzed.face.box)
        verdict = f"{best} ({scores[best]:.2f})" if scores[best] >= threshold else f"no match (best {best} {scores[best]:.2f})"
        print(f"  at [{x1},{y1},{x2},{y2}]: {verdict}")
