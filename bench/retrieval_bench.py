"""Retrieval quality: SciFact (nDCG@10, recall@100) and SQuAD (hit@1, hit@5, MRR).

    python -m bench --only retrieval            # through the umbrella (table + LATEST.md)
    python -m bench.retrieval_bench --quick     # this module alone, JSON on stdout

SciFact (BEIR layout, ../shared/data/scifact): the corpus goes in with
``RAG.add_texts(texts, metadatas=[{"source": _id}])``, one chunk per abstract; queries are the
train claims with qrels (the only split we have). Text per abstract is ``title + ". " + text``
(``--scifact-text full``) or its first 1000 characters (``first1000``, the texts
bench/store_bench.py embeds, so its embedding cache is reused; MiniLM reads ~256 word pieces,
about 1000 characters, so dense loses little while BM25 loses the tail of long abstracts).

Every method sees the same candidates: the dense top-``fetch`` from the store and the BM25
top-``fetch`` from ragtune's BM25 index; fusion is ``rag.retrieval.fuse_mix`` / ``fuse_rrf``
exactly as ``Retriever.retrieve`` calls them (checked against it on a few queries). The hybrid
dense_weight is tuned by 2-fold cross-validation over the queries (tune on one half, score on the
other); the in-sample best is reported next to it as the optimistic figure.

The LangChain baseline is what its docs show: ``HuggingFaceEmbeddings`` (same MiniLM) +
``FAISS.from_texts`` + ``similarity_search``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
SQUAD = ROOT.parent / "shared" / "data" / "squad"
CACHE = Path.home() / ".cache" / "ragtune-bench"
STORE_BENCH_CACHE = Path("/tmp/sb/ragtune-bench-cache")  # the lead's store_bench embeddings, if there
WEIGHTS = [round(0.1 * i, 1) for i in range(11)]


# -- metrics --------------------------------------------------------------------------------------
def ndcg_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def _dedup(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


# -- building the indexes (persistent under ~/.cache/ragtune-bench: quality does not depend on it) --
def _rag(data_dir: Path, **overrides):
    from rag.api import RAG
    from rag.settings import load_settings

    return RAG(settings=load_settings(env={}, overrides={"data_dir": str(data_dir), **overrides}))


def scifact_data(text_mode: str, n_queries: int = 0, n_docs: int = 0, seed: int = 0):
    """(doc ids, texts, queries [(qid, text, relevant ids)]) with an optional seeded subset.

    A corpus subset keeps every document relevant to a kept query plus random distractors.
    """
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (SCIFACT / "queries.jsonl").open())}
    qrels: dict[str, set[str]] = {}
    for line in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(did)
    qs = [(qid, queries[qid], rel) for qid, rel in qrels.items() if qid in queries]
    rng = random.Random(seed)
    if n_queries and n_queries < len(qs):
        qs = sorted(rng.sample(qs, n_queries), key=lambda q: int(q[0]))
    if n_docs and n_docs < len(corpus):
        keep = set().union(*(rel for _, _, rel in qs))
        rest = [d["_id"] for d in corpus if d["_id"] not in keep]
        keep |= set(rng.sample(rest, max(0, n_docs - len(keep))))
        corpus = [d for d in corpus if d["_id"] in keep]
    texts = [d["title"] + ". " + d["text"] for d in corpus]
    if text_mode == "first1000":
        texts = [t[:1000] for t in texts]
    return [d["_id"] for d in corpus], texts, qs


def build_scifact(data_dir: Path, ids: list[str], texts: list[str], log=print, **overrides):
    """A RAG over the SciFact texts, built once per data_dir (reused when already complete)."""
    fp32 = overrides.get("embedder_precision", "float32") == "float32" and \
        overrides.get("embedder_backend", "torch") == "torch"
    if fp32 and not (data_dir / "index").exists() and STORE_BENCH_CACHE.exists():
        # store_bench embedded the same first-1000-character texts: reuse its vectors
        (data_dir / "cache").mkdir(parents=True, exist_ok=True)
        for f in STORE_BENCH_CACHE.glob("embeddings-*.sqlite*"):
            if not (data_dir / "cache" / f.name).exists():
                shutil.copy2(f, data_dir / "cache" / f.name)
    rag = _rag(data_dir, **overrides)
    if rag.store.count() != len(ids):
        if rag.store.count():
            rag.close()
            shutil.rmtree(data_dir / "index", ignore_errors=True)
            rag = _rag(data_dir, **overrides)
        t0 = time.perf_counter()
        rag.add_texts(texts, metadatas=[{"source": i} for i in ids])
        log(f"    indexed {len(ids)} SciFact abstracts in {time.perf_counter() - t0:.0f} s")
    return rag


def candidates(rag, questions: list[str], fetch: int, query_embedder=None):
    """Per question: dense [(chunk id, score)] and BM25 [(chunk id, score)], top ``fetch`` each.

    ``query_embedder``: embed the questions with another runtime than the one that built the index
    (the cross-runtime check of docs/embedders.md)."""
    qv = (query_embedder or rag.embedder).embed(questions)  # one batch, not one call per query
    retr = rag.retriever
    dense = [[(h.id, h.score) for h in rag.store.search(v, fetch)] for v in qv]
    sparse = [retr.bm25.search(q, fetch) for q in questions]
    return dense, sparse


def fused(dense, sparse, k: int, fetch: int, fusion: str, weight: float, rrf_k: int = 60) -> list[str]:
    from rag.retrieval import fuse_mix, fuse_rrf

    d, s = dense[:fetch], sparse[:fetch]
    if fusion == "rrf":
        out = fuse_rrf([[c for c, _ in d], [c for c, _ in s]], max(fetch, k), rrf_k, [weight, 1 - weight])
    else:
        out = fuse_mix(d, s, max(fetch, k), weight)
    return [c for c, _ in out]


def rank_lists(dense, sparse, method: str, weight: float, k: int, fetch: int) -> list[str]:
    if method == "dense":
        return [c for c, _ in dense[:k]]
    if method == "bm25":
        return [c for c, _ in sparse[:k]]
    return fused(dense, sparse, k, fetch, method.split("-")[1], weight)[:k]


def _check_against_retriever(rag, questions, dense, sparse, fetch: int) -> None:
    """The simulated fusion must equal what Retriever.retrieve returns (default settings).

    The query is embedded alone here, as the Retriever does: in bf16 a vector depends slightly on
    the batch it was computed in, enough to swap near-tied passages further down the list.
    """
    w = rag.settings.retrieval.dense_weight
    for i, q in enumerate(questions[:3]):
        got = [h.id for h in rag.retrieve(q, k=10, mode="hybrid")]
        alone = [(h.id, h.score) for h in rag.store.search(rag.embedder.embed_query(q), len(dense[i]))]
        want = fused(alone, sparse[i], 10, fetch, "mix", w)[:10]
        if got != want:
            diff = next(j for j, (a, b) in enumerate(zip(got, want)) if a != b) if len(got) == len(want) else -1
            raise AssertionError(f"bench fusion differs from Retriever.retrieve on {q!r} from rank {diff + 1}: "
                                 f"{got} vs {want}")


# -- SciFact --------------------------------------------------------------------------------------
def runtime_overrides(precision: str = "auto", runtime: dict | None = None) -> tuple[dict, str]:
    """Settings overrides for an embedder runtime and the folder suffix its indexes live under."""
    over = {"embedder_precision": precision, **(runtime or {})}
    if over.get("embedder_backend", "torch") != "torch":
        over.setdefault("models_dir", str(CACHE / "models"))   # the bench's own exports
    tag = "-".join(str(v) for k, v in sorted(over.items()) if k != "models_dir" and v not in ("torch", "none"))
    return over, ("" if tag == "float32" else f"-{tag}")


def scifact(quick: bool, text_mode: str, log=print, langchain: bool = True, precision: str = "auto",
            tune: bool = True, runtime: dict | None = None, query_runtime: dict | None = None) -> dict:
    n_q, n_d = (300, 1500) if quick else (0, 0)
    ids, texts, qs = scifact_data(text_mode, n_q, n_d)
    over, suffix = runtime_overrides(precision, runtime)
    data_dir = CACHE / f"scifact-{text_mode}-{len(ids)}{suffix}"
    log(f"  scifact: {len(qs)} queries over {len(ids)} abstracts ({text_mode}, {over})")
    rag = build_scifact(data_dir, ids, texts, log, **over)
    cid_doc = {c.id: c.source for c in rag.store.get(rag.store.texts()[0])}
    fetch_small = rag.settings.retrieval.fetch_k
    qemb = _query_embedder(query_runtime, log)
    t0 = time.perf_counter()
    dense, sparse = candidates(rag, [q for _, q, _ in qs], 100, qemb)
    query_s = time.perf_counter() - t0
    if qemb is None:
        _check_against_retriever(rag, [q for _, q, _ in qs], dense, sparse, fetch_small)
    rel = [r for _, _, r in qs]

    def scores(method: str, weight: float, subset: list[int] | None = None) -> dict:
        idx = subset if subset is not None else range(len(qs))
        nd, rc = [], []
        for i in idx:
            top10 = _dedup([cid_doc[c] for c in rank_lists(dense[i], sparse[i], method, weight, 10, fetch_small)])
            top100 = _dedup([cid_doc[c] for c in rank_lists(dense[i], sparse[i], method, weight, 100, 100)])
            nd.append(ndcg_at(top10, rel[i]))
            rc.append(recall_at(top100, rel[i], 100))
        return {"ndcg@10": float(np.mean(nd)), "recall@100": float(np.mean(rc))}

    default_w = rag.settings.retrieval.dense_weight
    out = {"queries": len(qs), "docs": len(ids), "text": text_mode, "fetch_k": fetch_small,
           "query_seconds": query_s, "methods": {}}
    out["methods"]["bm25"] = scores("bm25", 0)
    out["methods"]["dense"] = scores("dense", 1)
    if not tune:  # the default hybrid only (what a user gets), no weight search
        out["methods"]["hybrid-mix"] = {**scores("hybrid-mix", default_w), "weight": default_w, "default": True}
    for fusion in ("mix", "rrf") if tune else ():
        name = f"hybrid-{fusion}"
        grid = {w: scores(name, w)["ndcg@10"] for w in WEIGHTS}
        best_w = max(grid, key=grid.get)
        # 2-fold CV: pick the weight on one half, score the other half with it
        order = list(range(len(qs)))
        random.Random(1).shuffle(order)
        folds = [order[: len(order) // 2], order[len(order) // 2:]]
        cv, picks = [], []
        for a, b in ((0, 1), (1, 0)):
            w = max(WEIGHTS, key=lambda w: scores(name, w, folds[a])["ndcg@10"])
            picks.append(w)
            cv.append(scores(name, w, folds[b])["ndcg@10"] * len(folds[b]))
        out["methods"][name] = {**scores(name, default_w), "weight": default_w, "default": True}
        out["methods"][f"{name} tuned"] = {**scores(name, best_w), "weight": best_w, "in_sample": True,
                                           "cv_ndcg@10": sum(cv) / len(qs), "cv_weights": picks, "grid": grid}
    if langchain:
        try:
            out["methods"]["langchain-faiss"] = langchain_scifact(ids, texts, qs, data_dir, log)
        except ImportError as e:  # the baseline's packages are optional: say so in the report
            out["langchain_missing"] = f"{e.name} not installed"
            log(f"    langchain baseline skipped: {e.name} not installed")
    rag.close()
    return out


def langchain_scifact(ids, texts, qs, data_dir: Path, log=print) -> dict:
    """HuggingFaceEmbeddings + FAISS.from_texts + similarity_search, as LangChain's docs show."""
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings

    from rag.model_paths import resolve_embedder

    emb = HuggingFaceEmbeddings(model_name=resolve_embedder("all-MiniLM-L6-v2"))
    where = data_dir / "langchain-faiss"
    if (where / "index.faiss").exists():
        db = FAISS.load_local(str(where), emb, allow_dangerous_deserialization=True)
    else:
        t0 = time.perf_counter()
        db = FAISS.from_texts(texts, emb, metadatas=[{"source": i} for i in ids])
        db.save_local(str(where))
        log(f"    langchain FAISS built in {time.perf_counter() - t0:.0f} s")
    nd, rc = [], []
    for _, q, rel in qs:
        docs = _dedup([d.metadata["source"] for d in db.similarity_search(q, k=100)])
        nd.append(ndcg_at(docs[:10], rel))
        rc.append(recall_at(docs, rel, 100))
    return {"ndcg@10": float(np.mean(nd)), "recall@100": float(np.mean(rc))}


# -- SQuAD ----------------------------------------------------------------------------------------
def _query_embedder(query_runtime: dict | None, log):
    """An embedder of another runtime for the queries (None: the index's own)."""
    if query_runtime is None:
        return None
    from rag.embedders import open_configured
    from rag.settings import load_settings

    over, suffix = runtime_overrides("auto", query_runtime)
    log(f"    queries embedded by {over}")
    return open_configured(load_settings(env={}, overrides={"data_dir": str(CACHE / f"queries{suffix}"), **over}))


def squad(quick: bool, log=print, weight: float | None = None, precision: str = "auto",
          runtime: dict | None = None, query_runtime: dict | None = None) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from squad_to_eval import convert

    rows = convert(SQUAD, 300 if quick else 0)
    over, suffix = runtime_overrides(precision, runtime)
    data_dir = CACHE / f"squad{suffix}"
    rag = _rag(data_dir, **over)
    res = rag.ingest([str(SQUAD)])
    if res.added:
        log(f"    ingested SQuAD articles: {res.chunks} chunks in {res.seconds:.0f} s")
    all_ids = rag.store.texts()[0]
    where = {c.id: (Path(c.source).name, c.page) for c in rag.store.get(all_ids)}
    fetch = rag.settings.retrieval.fetch_k
    qemb = _query_embedder(query_runtime, log)
    dense, sparse = candidates(rag, [r["question"] for r in rows], fetch, qemb)
    if qemb is None:
        _check_against_retriever(rag, [r["question"] for r in rows], dense, sparse, fetch)
    w0 = rag.settings.retrieval.dense_weight
    methods = [("dense", 1.0), ("bm25", 0.0), ("hybrid-mix", w0), ("hybrid-rrf", w0)]
    if weight is not None and weight != w0:
        methods += [("hybrid-mix", weight)]
    out = {"questions": len(rows), "chunks": len(all_ids), "methods": {}}
    for method, w in methods:
        h1, h5, mrr = [], [], []
        for i, r in enumerate(rows):
            refs = [(Path(s["source"]).name, set(s.get("pages") or [s["page"]])) for s in r["sources"]]
            ranked = rank_lists(dense[i], sparse[i], method, w, 10, fetch)
            rank = next((n for n, c in enumerate(ranked, 1)
                         if any(where[c][0] == src and where[c][1] in pages for src, pages in refs)), None)
            h1.append(rank == 1)
            h5.append(rank is not None and rank <= 5)
            mrr.append(1 / rank if rank else 0.0)
        name = method if method in ("dense", "bm25") or w == w0 else f"{method} w={w}"
        out["methods"][name] = {"hit@1": float(np.mean(h1)), "hit@5": float(np.mean(h5)), "mrr": float(np.mean(mrr)),
                                "weight": w}
    rag.close()
    return out


# Embedder runtimes compared on the quality gates (docs/embedders.md); torch fp32 is the reference.
RUNTIMES = {
    "torch fp32": ("float32", {"embedder_backend": "torch"}),
    "openvino int8": ("auto", {"embedder_backend": "openvino", "embedder_quantization": "int8"}),
    "openvino bf16": ("bfloat16", {"embedder_backend": "openvino"}),
    "torch bf16": ("bfloat16", {"embedder_backend": "torch"}),
}
CROSS = ("openvino int8", "torch fp32")   # mixed runtimes: may an int8 embedder search a float index?


def runtimes_quality(quick: bool, log=print, runtimes=None, on_step=None) -> dict:
    """SciFact nDCG@10 and SQuAD hit@5/MRR per embedder runtime, plus the cross-runtime pairs.

    ``on_step(partial)`` is called after each runtime, so a long run interrupted keeps its figures."""
    out: dict = {"scifact": {}, "squad": {}, "cross": {}}
    sub = scifact_data("first1000", *((300, 1500) if quick else (0, 0)))
    out["scifact_size"] = {"queries": len(sub[2]), "docs": len(sub[0])}
    on_step = on_step or (lambda partial: None)
    for name in runtimes or RUNTIMES:
        prec, rt = RUNTIMES[name]
        log(f"  retrieval: runtime {name}")
        out["scifact"][name] = scifact(quick, "first1000", log, langchain=False, precision=prec, tune=False,
                                       runtime=rt)["methods"]
        out["squad"][name] = squad(quick, log, precision=prec, runtime=rt)["methods"]
        on_step(out)
        if all(c in out["scifact"] for c in CROSS) and not out["cross"]:
            _cross(quick, out, log, on_step)   # as soon as both indexes exist
    return out


def _cross(quick: bool, out: dict, log, on_step) -> None:
    a, b = CROSS
    for index, queries in ((b, a), (a, b)):
        (pi, ri), (pq, rq) = RUNTIMES[index], RUNTIMES[queries]
        label = f"{queries} queries, {index} index"
        log(f"  retrieval: {label}")
        out["cross"][label] = {
            "scifact": scifact(quick, "first1000", log, langchain=False, precision=pi, tune=False, runtime=ri,
                               query_runtime={"embedder_precision": pq, **rq})["methods"],
            "squad": squad(quick, log, precision=pi, runtime=ri, query_runtime={"embedder_precision": pq, **rq})["methods"]}
        on_step(out)


def bench(quick: bool, text_mode: str | None = None, log=print) -> dict:
    text_mode = text_mode or ("first1000" if quick else "full")
    sf = scifact(quick, text_mode, log)
    tuned = sf["methods"]["hybrid-mix tuned"]["cv_weights"]
    cv_w = float(np.mean(tuned))
    sq = squad(quick, log, weight=round(cv_w, 1))
    return {"scifact": sf, "squad": sq}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="300 SciFact queries over 1,500 abstracts; 300 SQuAD questions")
    p.add_argument("--scifact-text", choices=["first1000", "full"])
    p.add_argument("--runtimes", metavar="OUT.json", type=Path,
                   help="only the embedder-runtime quality gates (SciFact subset, SQuAD sample), written to OUT.json "
                        "after every runtime")
    a = p.parse_args(argv)
    if a.runtimes:
        def dump(partial):
            a.runtimes.write_text(json.dumps(partial, indent=1))
        dump(runtimes_quality(True, log=lambda m: print(m, file=sys.stderr), on_step=dump))
        return 0
    print(json.dumps(bench(a.quick, a.scifact_text, log=lambda m: print(m, file=sys.stderr)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
