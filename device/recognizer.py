"""Detection and embedding on OpenVINO, asynchronously.

Both models run through ``AsyncInferQueue``: the runtime starts detection of the
next frame, then embeds the faces of this frame while that detection runs (the
inference threads release the GIL, so the two overlap with each other and with the
Python work around them). Faces are embedded in batches of up to ``max_batch``.

The split is the detector's own: ``prepare`` (letterbox) before, ``decode``
(anchors, NMS) after; optional tiles are extra detection requests of the same frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import openvino as ov

from lookout.face.detector import Letterbox, merge_faces
from lookout.face.pipeline import FacePipeline
from lookout.face.types import Face


@dataclass
class _Job:
    done: threading.Event = field(default_factory=threading.Event)
    outputs: tuple = ()
    error: str | None = None


class _Pending:
    """Requests in flight for one frame (detection) or one set of faces (embedding)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[_Job, object]] = []

    def wait(self, timeout: float = 30.0) -> list[tuple[_Job, object]]:
        for job, _ in self.jobs:
            if not job.done.wait(timeout):
                raise TimeoutError("inference did not finish in time")
            if job.error:
                raise RuntimeError(job.error)
        return self.jobs


def _collect(request: ov.InferRequest, job: _Job) -> None:
    try:
        job.outputs = tuple(request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs)))
    except Exception as err:
        job.error = repr(err)
    job.done.set()


class Recognizer:
    def __init__(self, pipeline: FacePipeline, *, max_batch: int = 8, jobs: int = 2) -> None:
        self.pipeline = pipeline
        self.detector = pipeline.detector
        self.embedder = pipeline.embedder
        self.max_batch = max_batch
        self._det_queue = ov.AsyncInferQueue(self.detector.compiled, jobs)
        self._det_queue.set_callback(_collect)
        self._emb_queue = ov.AsyncInferQueue(self.embedder.compiled, jobs)
        self._emb_queue.set_callback(_collect)

    # -- detection -----------------------------------------------------------------
    def start_detection(self, image: np.ndarray) -> _Pending:
        pending = _Pending()
        for x, y, w, h in self.detector.regions(image.shape[1], image.shape[0]):
            tensor, box = self.detector.prepare(image[y : y + h, x : x + w], offset=(x, y))
            job = _Job()
            self._det_queue.start_async({0: tensor}, job)
            pending.jobs.append((job, box))
        return pending

    def finish_detection(self, pending: _Pending) -> list[Face]:
        found: list[Face] = []
        jobs = pending.wait()
        for job, box in jobs:
            assert isinstance(box, Letterbox)
            found += self.detector.decode((job.outputs[0], job.outputs[1]), box, merge=len(jobs) == 1)
        if len(jobs) > 1:
            found = merge_faces(found, self.detector.config.nms_iou, self.detector.config.max_faces)
        return found

    # -- alignment and embedding ---------------------------------------------------------
    def align(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        return self.pipeline.align(image, faces)

    def start_embedding(self, chips: np.ndarray) -> _Pending:
        pending = _Pending()
        for i in range(0, len(chips), self.max_batch):
            job = _Job()
            self._emb_queue.start_async({0: np.ascontiguousarray(chips[i : i + self.max_batch])}, job)
            pending.jobs.append((job, None))
        return pending

    def finish_embedding(self, pending: _Pending) -> np.ndarray:
        jobs = pending.wait()
        if not jobs:
            return np.zeros((0, self.embedder.dim), np.float32)
        return np.concatenate([job.outputs[0] for job, _ in jobs]).astype(np.float32, copy=False)
