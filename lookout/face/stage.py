"""One model, one stage: the uniform way every model of the face pipeline runs.

Like the Open Model Zoo demos' model adapters, a stage splits a model into the parts
around inference, so that the same code serves a photo (synchronously) and a video
stream (asynchronously, overlapping inference with the Python work around it)::

    prepare(item)              -> [(input tensor, context), ...]   one or more requests per item
    run(item)                  -> result                           synchronous: submit, then collect
    submit(item)               -> Pending                          asynchronous: start the requests
    collect(pending)           -> result                           wait for them, then decode
    decode(outputs, contexts)  -> result                           raw outputs of every request -> result

Every request of every stage goes through the stage's own ``ov.AsyncInferQueue``; the
inference threads release the GIL, so two stages (the detection of one frame and the
embedding of the previous frame's faces) run side by side. A new model (a landmarks
model refining keypoints, say) is one more subclass: ``prepare`` and ``decode``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import openvino as ov

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
ContextT = TypeVar("ContextT")

Outputs = tuple[np.ndarray, ...]
INFER_TIMEOUT_S = 30.0


@dataclass
class _Job:
    """One inference request in flight; the queue's callback fills it in."""

    done: threading.Event = field(default_factory=threading.Event)
    outputs: Outputs = ()
    error: str | None = None


@dataclass
class Pending(Generic[ContextT]):
    """The requests of one submitted item, with the context each needs to be decoded."""

    jobs: list[_Job]
    contexts: list[ContextT]


def _on_done(request: ov.InferRequest, job: _Job) -> None:
    try:
        job.outputs = tuple(request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs)))
    except Exception as err:  # reported to the caller by collect(), never lost in the inference thread
        job.error = repr(err)
    job.done.set()


class Stage(ABC, Generic[ItemT, ResultT, ContextT]):
    """A compiled model with its preparation and decoding; ``jobs`` requests may be in flight at once."""

    def __init__(self, compiled: ov.CompiledModel, jobs: int = 2) -> None:
        self._compiled = compiled
        self._queue = ov.AsyncInferQueue(compiled, jobs)
        self._queue.set_callback(_on_done)

    @abstractmethod
    def prepare(self, item: ItemT) -> list[tuple[np.ndarray, ContextT]]:
        """The input tensor of each inference request ``item`` needs, and what decoding its outputs needs."""

    @abstractmethod
    def decode(self, outputs: list[Outputs], contexts: list[ContextT]) -> ResultT:
        """The result for one item from the outputs of its requests (in ``prepare``'s order)."""

    def submit(self, item: ItemT) -> Pending[ContextT]:
        pending: Pending[ContextT] = Pending([], [])
        for tensor, context in self.prepare(item):
            job = _Job()
            self._queue.start_async({0: np.ascontiguousarray(tensor)}, job)
            pending.jobs.append(job)
            pending.contexts.append(context)
        return pending

    def collect(self, pending: Pending[ContextT], timeout: float = INFER_TIMEOUT_S) -> ResultT:
        for job in pending.jobs:
            if not job.done.wait(timeout):
                raise TimeoutError(f"{type(self).__name__}: inference did not finish in {timeout:g} s")
            if job.error:
                raise RuntimeError(f"{type(self).__name__}: inference failed: {job.error}")
        return self.decode([job.outputs for job in pending.jobs], pending.contexts)

    def run(self, item: ItemT) -> ResultT:
        return self.collect(self.submit(item))

    @property
    def execution_devices(self) -> list[str]:
        """Where OpenVINO runs this model (AUTO resolves to a real device)."""
        return list(self._compiled.get_property("EXECUTION_DEVICES"))
