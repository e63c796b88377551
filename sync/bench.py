"""`lookout bench index`: HNSW against exact search on watchlist-like synthetic data.

Gallery vectors: ``x = sqrt(c) u + sqrt(1-c) g`` (``u`` a fixed direction;
``g`` random unit vectors with a decaying power-law spectrum, like real
embeddings, whose intrinsic dimension is far below 512: the decay is set so
unrelated vectors have cosine standard deviation --impostor-sd, 0.10 by default,
FaceNet's measured 0.098 on faces-dev; 0 gives isotropic data, the worst case), ``c`` = --background-cos; c=0 is isotropic, c~0.85 mimics
dlib's crowded cosines). Each query has one mate in the gallery with cosine
about --mate-cos (the match threshold's): ``q = sqrt(c) u + sqrt(1-c) h`` with
``h = rho g_mate + sqrt(1-rho^2) n``. Random queries without a mate say nothing
about a watchlist, so the figure that matters is the recall of that mate.

Printed per size and ef: build time and threads, index memory (RSS growth and
hnswlib's own size), single-query latency p50/p99 for HNSW and for exact search
(numpy matrix-vector product), mate recall@1/@10 for both, and the overlap of
HNSW's top 10 with the exact top 10.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import TextIO

import hnswlib
import numpy as np


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def spectrum(dim: int, impostor_sd: float | None) -> np.ndarray:
    """Per-dimension standard deviations ``i^(-a/2)`` with ``a`` chosen so that unrelated residuals have
    cosine standard deviation ``impostor_sd`` (participation ratio 1/sd^2); None: isotropic."""
    if not impostor_sd:
        return np.ones(dim, np.float32)
    target = min(1.0 / impostor_sd**2, dim)
    i = np.arange(1, dim + 1, dtype=np.float64)

    def ratio(a: float) -> float:
        lam = i**-a
        return lam.sum() ** 2 / (lam**2).sum()

    lo, hi = 0.0, 4.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ratio(mid) > target else (lo, mid)
    return np.sqrt(i**-lo).astype(np.float32)


def make_data(
    n: int,
    dim: int,
    queries: int,
    mate_cos: float,
    background_cos: float,
    seed: int = 0,
    impostor_sd: float | None = 0.10,
):
    """(gallery (n,dim) float32 unit, queries (q,dim) unit, mate index per query)."""
    rng = np.random.default_rng(seed)
    c = background_cos
    scale = spectrum(dim, impostor_sd)
    u = _unit(rng.standard_normal((1, dim)).astype(np.float32))[0]
    gallery = np.empty((n, dim), np.float32)
    residual_of = {}
    mates = rng.choice(n, size=queries, replace=False)
    mate_set = {int(m): i for i, m in enumerate(mates)}
    chunk = 50_000
    for start in range(0, n, chunk):
        g = _unit(rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32) * scale)
        for i in range(len(g)):
            if start + i in mate_set:
                residual_of[start + i] = g[i].copy()
        gallery[start : start + len(g)] = _unit(np.sqrt(c) * u + np.sqrt(1 - c) * g)
    rho = (mate_cos - c) / (1 - c)
    noise = _unit(rng.standard_normal((queries, dim), dtype=np.float32) * scale)
    g_m = np.stack([residual_of[int(m)] for m in mates])
    h = _unit(rho * g_m + np.sqrt(max(1 - rho * rho, 0.0)) * noise)
    q = _unit(np.sqrt(c) * u + np.sqrt(1 - c) * h).astype(np.float32)
    return gallery, q, mates


def _exact_topk(gallery: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(queries), k), np.int64)
    for s in range(0, len(queries), 256):
        scores = queries[s : s + 256] @ gallery.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, 1).argsort(axis=1)[:, ::-1]
        out[s : s + 256] = np.take_along_axis(part, order, 1)
    return out


def _pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def bench_size(
    n: int,
    dim: int,
    queries: int,
    mate_cos: float,
    background_cos: float,
    M: int,
    ef_construction: int,
    efs: list[int],
    threads: int,
    impostor_sd: float | None = 0.10,
) -> list[dict]:
    gallery, q, mates = make_data(n, dim, queries, mate_cos, background_cos, impostor_sd=impostor_sd)
    sample = gallery[np.random.default_rng(1).choice(n, size=min(n, 2000), replace=False)]
    pair = sample[:1000] @ sample[1000:].T if len(sample) >= 2000 else sample @ sample.T
    impostor = {
        "mean": round(float(pair.mean()), 3),
        "sd": round(float(pair.std()), 3),
        "max": round(float(pair.max()), 3),
    }
    actual_mate_cos = float(np.mean(np.sum(q * gallery[mates], axis=1)))
    # exact search: ground truth and its own single-query latency
    exact = _exact_topk(gallery, q, 10)
    exact_lat = []
    for i in range(min(queries, 200 if n <= 100_000 else 50)):
        t = time.perf_counter()
        s = gallery @ q[i]
        int(np.argmax(s))
        exact_lat.append((time.perf_counter() - t) * 1000)
    rss0 = _rss_bytes()
    index = hnswlib.Index(space="ip", dim=dim)
    t = time.perf_counter()
    index.init_index(max_elements=n, M=M, ef_construction=ef_construction, random_seed=100)
    index.add_items(gallery, np.arange(n), num_threads=threads)
    build_s = time.perf_counter() - t
    mem = _rss_bytes() - rss0
    rows = []
    for ef in efs:
        index.set_ef(ef)
        index.set_num_threads(1)
        index.knn_query(q[:10], k=10)  # warm-up
        lat, found = [], np.empty((queries, 10), np.int64)
        for i in range(queries):
            t = time.perf_counter()
            labels, _ = index.knn_query(q[i : i + 1], k=10)
            lat.append((time.perf_counter() - t) * 1000)
            found[i] = labels[0]
        rows.append(
            {
                "n": n,
                "dim": dim,
                "M": M,
                "ef_construction": ef_construction,
                "ef": ef,
                "mate_cos": round(actual_mate_cos, 3),
                "background_cos": background_cos,
                "impostor_cos": impostor,
                "build_s": round(build_s, 1),
                "build_threads": threads if threads > 0 else os.cpu_count(),
                "mem_mb": round(mem / 2**20),
                "index_mb": round(index.index_file_size() / 2**20),
                "vectors_mb": round(gallery.nbytes / 2**20),
                "hnsw_p50_ms": round(_pct(lat, 50), 3),
                "hnsw_p99_ms": round(_pct(lat, 99), 3),
                "exact_p50_ms": round(_pct(exact_lat, 50), 3),
                "exact_p99_ms": round(_pct(exact_lat, 99), 3),
                "mate_recall@1": round(float(np.mean(found[:, 0] == mates)), 4),
                "mate_recall@10": round(float(np.mean([m in row for m, row in zip(mates, found)])), 4),
                "exact_mate_recall@1": round(float(np.mean(exact[:, 0] == mates)), 4),
                "top10_overlap_vs_exact": round(
                    float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])), 4
                ),
            }
        )
    del index
    return rows


def run_index_bench(
    sizes: list[int],
    dim: int = 512,
    queries: int = 1000,
    mate_cos: float = 0.60,
    background_cos: float = 0.0,
    M: int = 16,
    ef_construction: int = 200,
    efs: Sequence[int] = (64,),
    threads: int = -1,
    as_json: bool = False,
    out: TextIO | None = None,
    impostor_sd: float | None = 0.10,
) -> list[dict]:
    load = os.getloadavg()
    header = (
        f"lookout bench index: dim {dim}, {queries} queries each with one mate at cosine ~{mate_cos}, "
        f"background cosine {background_cos}, impostor cosine sd {impostor_sd or 'isotropic'}, M {M}, ef_construction {ef_construction}; "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    if out and not as_json:
        print(header, file=out)
        print(
            f"{'n':>9} {'ef':>4} {'build s':>8} {'mem MB':>7} {'p50 ms':>7} {'p99 ms':>7} {'exact p50':>9} "
            f"{'exact p99':>9} {'mate@1':>7} {'mate@10':>7} {'exact@1':>7} {'top10 ov':>8}",
            file=out,
            flush=True,
        )
    all_rows = []
    for n in sizes:
        rows = bench_size(
            n, dim, queries, mate_cos, background_cos, M, ef_construction, list(efs), threads, impostor_sd
        )
        all_rows += rows
        if out and not as_json:
            for r in rows:
                print(
                    f"{r['n']:>9} {r['ef']:>4} {r['build_s']:>8.1f} {r['mem_mb']:>7} {r['hnsw_p50_ms']:>7.3f} "
                    f"{r['hnsw_p99_ms']:>7.3f} {r['exact_p50_ms']:>9.3f} {r['exact_p99_ms']:>9.3f} "
                    f"{r['mate_recall@1']:>7.4f} {r['mate_recall@10']:>7.4f} {r['exact_mate_recall@1']:>7.4f} "
                    f"{r['top10_overlap_vs_exact']:>8.4f}",
                    file=out,
                    flush=True,
                )
    if out and as_json:
        print(json.dumps({"header": header, "rows": all_rows}), file=out)
    return all_rows
