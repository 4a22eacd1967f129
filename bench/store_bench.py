"""Embedded-store benchmark: build time, query latency, recall@10 and disk size at scale.

    python bench/store_bench.py --sizes 10000,100000,1000000      # the full figures (~15 min)
    python bench/store_bench.py --quick                            # 10k only

Vectors are real MiniLM embeddings of the SciFact abstracts (../shared/data/scifact) plus
perturbed copies of them (noise, renormalised) to reach the target size: random vectors are the
worst case for ANN indexes and say nothing about recall on real data. Queries are the real
SciFact claims, embedded. Recall@10 is against exact (flat) search over the same vectors.

Candidates, each through the same steps (bulk insert, build, query):
- ragtune's embedded store (SQLite + FAISS: exact below 50k chunks, IVF above)
- FAISS HNSW (M=32, efSearch=64) in memory, the usual "fast ANN" alternative
- exact FAISS flat search (the baseline every ratio is printed against)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"


def real_vectors(cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(corpus vectors, query vectors), embedded once and cached (content-addressed)."""
    from rag.embedders import open_embedder
    from rag.embedders.cache import CachedEmbedder

    emb = CachedEmbedder(open_embedder("all-MiniLM-L6-v2"), cache_dir)
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    queries = [json.loads(line) for line in (SCIFACT / "queries.jsonl").open()]
    docs = emb.embed([(d["title"] + ". " + d["text"])[:1000] for d in corpus])
    qs = emb.embed([q["text"] for q in queries])
    return docs, qs


def scaled(base: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """The real vectors, then perturbed copies (sigma 0.25 per unit vector) up to n rows."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    m = min(n, len(base))
    out[:m] = base[:m]
    i = m
    while i < n:
        take = min(len(base), n - i)
        noise = rng.normal(scale=0.25 / np.sqrt(base.shape[1]), size=(take, base.shape[1])).astype(np.float32)
        block = base[:take] + noise
        out[i:i + take] = block / np.linalg.norm(block, axis=1, keepdims=True)
        i += take
    return out


def exact_topk(vecs: np.ndarray, qs: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    return index.search(qs, k)[1]


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) * 1000


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_embedded(vecs: np.ndarray, qs: np.ndarray, truth: np.ndarray, work: Path) -> dict:
    from rag.stores.embedded import EmbeddedStore
    from rag.types import Chunk

    path = work / "embedded"
    shutil.rmtree(path, ignore_errors=True)
    store = EmbeddedStore(str(path))
    t0 = time.perf_counter()
    step = 20_000
    for i in range(0, len(vecs), step):
        part = vecs[i:i + step]
        store.upsert([Chunk(f"c{j}", f"chunk {j}", f"doc{j // 50}", j % 30, j % 50)
                      for j in range(i, i + len(part))], part)
    t_insert = time.perf_counter() - t0
    t1 = time.perf_counter()
    store.flush()                     # builds (trains) the FAISS index and saves it
    t_index = time.perf_counter() - t1
    store.close()
    t2 = time.perf_counter()
    store = EmbeddedStore(str(path))  # reopen: loads the saved index, no rebuild
    store.search(qs[0], 10)
    t_reopen = time.perf_counter() - t2
    lat, found = [], []
    for q in qs:
        t = time.perf_counter()
        hits = store.search(q, 10)
        lat.append(time.perf_counter() - t)
        found.append([int(h.id[1:]) for h in hits])
    flat_lat = []
    from rag.types import Filter

    for q in qs[:100]:
        t = time.perf_counter()
        store.search(q, 10, Filter(source=[f"doc{d}" for d in range(0, 400, 7)], page_min=3, page_max=20))
        flat_lat.append(time.perf_counter() - t)
    kind = store._index_kind
    store.close()
    return {"insert_s": t_insert, "index_s": t_index, "reopen_s": t_reopen, "p50_ms": pct(lat, 50),
            "p95_ms": pct(lat, 95), "filtered_p50_ms": pct(flat_lat, 50), "recall@10": recall(found, truth),
            "disk_mb": dir_size(path) / 2**20, "index": kind}


def bench_hnsw(vecs: np.ndarray, qs: np.ndarray, truth: np.ndarray, max_n: int) -> dict | None:
    import faiss

    if len(vecs) > max_n:
        return None
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(vecs.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    index.add(vecs)
    build = time.perf_counter() - t0
    index.hnsw.efSearch = 64
    lat, found = [], []
    for q in qs:
        t = time.perf_counter()
        _, ids = index.search(q.reshape(1, -1), 10)
        lat.append(time.perf_counter() - t)
        found.append(ids[0].tolist())
    return {"build_s": build, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "recall@10": recall(found, truth)}


def bench_flat(vecs: np.ndarray, qs: np.ndarray) -> dict:
    import faiss

    faiss.omp_set_num_threads(1)  # same as the store: one query per call, no OpenMP spin-waits

    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    lat = []
    for q in qs[:50]:
        t = time.perf_counter()
        index.search(q.reshape(1, -1), 10)
        lat.append(time.perf_counter() - t)
    return {"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--quick", action="store_true", help="10k chunks only")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this size (its build is slow)")
    p.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "store.json"))
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = [10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="ragtune-storebench-"))
    base, qs = real_vectors(work.parent / "ragtune-bench-cache")
    qs = qs[: args.queries]
    print(f"real vectors: {len(base)} SciFact abstracts, {len(qs)} claims as queries; cpu={os.cpu_count()}")
    rows = []
    for n in sizes:
        vecs = scaled(base, n)
        truth = exact_topk(vecs, qs, 10)
        flat = bench_flat(vecs, qs)
        emb = bench_embedded(vecs, qs, truth, work)
        hnsw = bench_hnsw(vecs, qs, truth, args.hnsw_max)
        row = {"n": n, "flat": flat, "embedded": emb, "hnsw": hnsw}
        rows.append(row)
        print(f"\n== {n:,} chunks ==")
        print(f"exact flat (baseline): p50 {flat['p50_ms']:.2f} ms, p95 {flat['p95_ms']:.2f} ms")
        print(f"ragtune embedded [{emb['index']}]: insert {emb['insert_s']:.1f} s, index build {emb['index_s']:.1f} s, "
              f"reopen {emb['reopen_s']:.2f} s, p50 {emb['p50_ms']:.2f} ms (x{flat['p50_ms'] / emb['p50_ms']:.1f} "
              f"vs flat), p95 {emb['p95_ms']:.2f} ms, filtered p50 {emb['filtered_p50_ms']:.2f} ms, "
              f"recall@10 {emb['recall@10']:.3f}, disk {emb['disk_mb']:.0f} MB")
        if hnsw:
            print(f"FAISS HNSW M=32: build {hnsw['build_s']:.1f} s, p50 {hnsw['p50_ms']:.2f} ms, "
                  f"recall@10 {hnsw['recall@10']:.3f}")
        target = "MET" if emb["p50_ms"] <= 20 and emb["recall@10"] >= 0.95 else "MISSED"
        print(f"target p50 <= 20 ms with recall@10 >= 0.95: {target}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak RSS {peak:.1f} GB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "peak_rss_gb": peak}, indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
