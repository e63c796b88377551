"""The vector index: hnswlib HNSW over unit embeddings, inner-product space.

Scores are cosine similarities (inner products of unit vectors), the product's
one score convention: hnswlib's "ip" distance is ``1 - <a, b>``, turned back
into a similarity here. ``ef`` is not saved in hnswlib's file, so it is kept in
the bundle manifest and set on every load.

Thread safety: a readers-writer lock lets searches run side by side while an
insert or removal waits for them, and no search runs during an insert.

Determinism: ``add(..., num_threads=1)`` after ``load`` gives byte-identical
files in any process (hnswlib seeds its level generator the same way each
time); bundle deltas rely on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

SPACE = "ip"
RANDOM_SEED = 100


@dataclass(frozen=True)
class IndexParams:
    """HNSW parameters; see docs/gallery.md for why these values (measured with `lookout bench index`)."""

    M: int = 32
    ef_construction: int = 200
    ef: int = 256

    def __post_init__(self) -> None:
        """hnswlib crashes the process (segmentation fault) with M below 2: refuse bad values here, whether they
        come from the command line or from a manifest."""
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        for name, value, least in (("M", self.M, 2), ("ef_construction", self.ef_construction, 1), ("ef", self.ef, 1)):
            if not isinstance(value, int) or value < least:
                return f"HNSW {name} must be an integer of at least {least}, got {value!r}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RWLock:
    """Many readers or one writer."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


class VectorIndex:
    """hnswlib index with integer labels, live count, and a readers-writer lock."""

    def __init__(self, index: hnswlib.Index, params: IndexParams, dim: int, deleted: int = 0) -> None:
        self._index = index
        self.params = params
        self.dim = dim
        self._deleted = deleted
        self._lock = RWLock()
        index.set_ef(params.ef)

    @classmethod
    def create(cls, dim: int, params: IndexParams | None = None, capacity: int = 1024) -> VectorIndex:
        params = params or IndexParams()
        index = hnswlib.Index(space=SPACE, dim=dim)
        index.init_index(
            max_elements=max(capacity, 1), M=params.M, ef_construction=params.ef_construction, random_seed=RANDOM_SEED
        )
        return cls(index, params, dim)

    @classmethod
    def load(cls, path: Path, dim: int, params: IndexParams, deleted: int = 0) -> VectorIndex:
        index = hnswlib.Index(space=SPACE, dim=dim)
        index.load_index(str(path))
        return cls(index, params, dim, deleted)

    # -- state -------------------------------------------------------------------
    @property
    def elements(self) -> int:
        """Elements stored, including ones marked deleted."""
        return int(self._index.element_count)

    @property
    def count(self) -> int:
        """Live (searchable) elements."""
        return int(self._index.element_count) - self._deleted

    @property
    def deleted(self) -> int:
        return self._deleted

    @property
    def capacity(self) -> int:
        return int(self._index.max_elements)

    def set_ef(self, ef: int) -> None:
        with self._lock.write():
            self._index.set_ef(ef)

    # -- writes ------------------------------------------------------------------
    def add(self, vectors: np.ndarray, labels: np.ndarray, num_threads: int = -1) -> None:
        vectors = normalise(vectors)
        labels = np.asarray(labels, np.int64)
        if len(vectors) != len(labels):
            raise ValueError("vectors and labels differ in length")
        if not len(labels):
            return
        with self._lock.write():
            need = self._index.element_count + len(labels)
            if need > self._index.max_elements:
                self._index.resize_index(need)
            self._index.add_items(vectors, labels, num_threads=num_threads)

    def remove(self, labels: Iterable[int]) -> None:
        with self._lock.write():
            for label in sorted(int(x) for x in labels):
                self._index.mark_deleted(label)
                self._deleted += 1

    def resize(self, capacity: int) -> None:
        with self._lock.write():
            if capacity > self._index.max_elements:
                self._index.resize_index(capacity)

    def save(self, path: Path) -> None:
        with self._lock.read():
            self._index.save_index(str(path))

    # -- reads -------------------------------------------------------------------
    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels (N,k'), cosine scores (N,k')), best first; k' = min(k, live count)."""
        vectors = normalise(vectors)
        with self._lock.read():
            k = min(k, self.count)
            if k <= 0 or not len(vectors):
                return np.zeros((len(vectors), 0), np.int64), np.zeros((len(vectors), 0), np.float32)
            labels, distances = self._index.knn_query(vectors, k=k)
        return labels.astype(np.int64), (1.0 - distances).astype(np.float32)

    def get(self, labels: Iterable[int]) -> np.ndarray:
        with self._lock.read():
            vectors: np.ndarray = np.asarray(self._index.get_items(list(labels)), np.float32)
            return vectors.reshape(-1, self.dim)

    def labels(self) -> list[int]:
        with self._lock.read():
            return list(self._index.get_ids_list())
