"""The HNSW wrapper and `lookout bench index` on small synthetic data (fast)."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

from lookout.gallery.index import IndexParams, VectorIndex
from lookout.sync.bench import make_data, run_index_bench


def test_index_scores_are_cosine_and_ef_set_on_load(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = VectorIndex.create(32, IndexParams(M=16, ef_construction=100, ef=50), capacity=10)
    index.add(x, np.arange(500))  # grows past its capacity
    labels, scores = index.search(x[:5], 3)
    assert list(labels[:, 0]) == [0, 1, 2, 3, 4] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    index.remove([0])
    assert index.count == 499 and index.search(x[:1], 1)[0][0, 0] != 0
    index.save(tmp_path / "i.bin")
    loaded = VectorIndex.load(tmp_path / "i.bin", 32, IndexParams(M=16, ef_construction=100, ef=77), deleted=1)
    assert loaded._index.ef == 77 and loaded.count == 499
    assert loaded.search(x[:1], 600)[0].shape == (1, 499)  # k clipped to the live count


def test_searches_never_overlap_inserts():
    index = VectorIndex.create(16, capacity=10)
    rng = np.random.default_rng(1)
    errors = []

    def writer():
        for i in range(20):
            index.add(rng.standard_normal((50, 16)).astype(np.float32), np.arange(i * 50, i * 50 + 50))

    def reader():
        try:
            for _ in range(200):
                index.search(np.ones((1, 16), np.float32), 5)
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and index.count == 1000


def test_synthetic_mates_at_threshold_cosine():
    gallery, q, mates = make_data(3000, 64, 50, mate_cos=0.6, background_cos=0.0, impostor_sd=0.15)
    mate_cos = np.sum(q * gallery[mates], axis=1)
    assert abs(mate_cos.mean() - 0.6) < 0.05
    assert np.allclose(np.linalg.norm(gallery, axis=1), 1, atol=1e-4)


@pytest.mark.slow
def test_bench_index_runs_and_reports():
    out = io.StringIO()
    rows = run_index_bench([2000], dim=64, queries=100, efs=[64], M=16, ef_construction=100, out=out)
    assert "load average" in out.getvalue()
    (row,) = rows
    assert row["exact_mate_recall@1"] >= 0.95 and row["mate_recall@10"] >= 0.9
    assert row["build_s"] >= 0 and row["hnsw_p99_ms"] > 0
