"""Retrieval over a store: dense, BM25, hybrid (fused) and MMR, with an optional re-ranker.

BM25 runs over the same chunks the store holds (bm25s with a Snowball stemmer, built lazily and
rebuilt when the store changes). Hybrid fuses a dense and a BM25 candidate list; the default
fusion is a convex mix of min-max normalised scores, which measured above reciprocal-rank
fusion on SciFact train queries (bench/retrieval_bench.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.doc_prior import DocPrior
from rag.doc_prior import apply as apply_doc_prior
from rag.errors import ConfigError
from rag.settings import RetrievalSettings
from rag.stores import VectorStore
from rag.types import MODES, Filter, Hit

MAX_K = 1000  # passages per request; more is a mistake (or an attempt to dump the index)


def check_question(question: Any) -> str:
    """The question, or a ConfigError naming what is wrong (every route calls this first)."""
    if not isinstance(question, str):
        raise ConfigError(f"question: expected a string, got {type(question).__name__}")
    if not question.strip():
        raise ConfigError("question: empty or whitespace only; ask something")
    return question


def check_retrieval(k: Any, mode: Any, fetch_k: Any, settings: RetrievalSettings) -> tuple[int, str, int]:
    """``k``, ``mode`` and ``fetch_k`` with defaults from settings, validated once for every caller.

    Raises:
        ConfigError: naming the argument, its value and what is accepted.
    """
    k = settings.k if k is None else k
    mode = settings.mode if mode is None else mode
    fetch_k = settings.fetch_k if fetch_k is None else fetch_k
    for name, value in (("k", k), ("fetch_k", fetch_k)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_K:
            raise ConfigError(f"{name}: {value!r} is not a number of passages (an integer from 1 to {MAX_K})")
    if mode not in MODES:
        raise ConfigError(f"mode: unknown retrieval mode {mode!r} (known: {', '.join(MODES)})")
    return k, mode, fetch_k


class BM25Index:
    """A keyword index over the store's chunks, rebuilt when the store's version changes."""

    def __init__(self, store: VectorStore, language: str = "english"):
        self.store = store
        self.language = language
        self._version: Any = None
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._colls: list[str] = []  # each id's collection: filtered searches drop others before ranking
        self._retriever = None
        self._lock = threading.Lock()

    def _store_version(self) -> Any:
        version = getattr(self.store, "version", None)
        return version() if version else self.store.count()

    def _tokenize(self, texts: list[str]):
        import bm25s
        import Stemmer

        stemmer = Stemmer.Stemmer(self.language)
        return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)

    def _refresh(self) -> None:
        import bm25s

        version = self._store_version()
        if version == self._version and self._retriever is not None:
            return
        texts_fn = getattr(self.store, "texts", None)
        if texts_fn is not None:
            ids, texts, colls = texts_fn(with_collections=True)  # one read: the lists stay aligned
        else:
            ids, texts, colls = [], [], []
            for chunks, _ in self.store.iter_chunks():
                ids += [c.id for c in chunks]
                texts += [c.text for c in chunks]
                colls += [c.collection for c in chunks]
        self._ids, self._texts, self._colls = ids, texts, colls
        retriever = bm25s.BM25()
        if texts:
            retriever.index(self._tokenize(texts), show_progress=False)
        self._retriever, self._version = retriever, version

    def search(self, query: str, k: int, filter: Filter | None = None) -> list[tuple[str, float]]:
        """(chunk id, score) pairs, best first."""
        with self._lock:
            self._refresh()
            if not self._ids:
                return []
            tokens = self._tokenize([query])
            if not tokens.vocab or not any(len(t) for t in tokens.ids):
                return []
            n = len(self._ids)
            want = n if filter is not None and not filter.is_empty() else min(k, n)
            docs, scores = self._retriever.retrieve(tokens, k=min(n, max(want, k)), show_progress=False,
                                                    n_threads=1)
            allowed = None if filter is None or filter.collections is None else set(filter.collections)
            # With a filter every document was scored (want = n), so dropping other collections here
            # leaves the complete ranking of the allowed ones, never a cut top-k.
            out = [(self._ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0])
                   if s > 0 and (allowed is None or self._colls[int(d)] in allowed)]
        return out


def _minmax(scores: Sequence[float]) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if len(arr) == 0:
        return arr
    lo, hi = arr.min(), arr.max()
    return np.ones_like(arr) if hi - lo < 1e-12 else (arr - lo) / (hi - lo)


def fuse_rrf(lists: Sequence[Sequence[str]], k: int, rrf_k: int = 60, weights: Sequence[float] | None = None
             ) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion of ranked id lists."""
    weights = weights or [1.0] * len(lists)
    scores: dict[str, float] = {}
    for w, ids in zip(weights, lists):
        for rank, cid in enumerate(ids):
            scores[cid] = scores.get(cid, 0.0) + w / (rrf_k + rank + 1)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:k]


def fuse_mix(dense: Sequence[tuple[str, float]], sparse: Sequence[tuple[str, float]], k: int,
             dense_weight: float = 0.5) -> list[tuple[str, float]]:
    """Convex mix of min-max normalised scores; a list missing an id contributes 0 for it."""
    scores: dict[str, float] = {}
    for w, pairs in ((dense_weight, dense), (1 - dense_weight, sparse)):
        for (cid, _), s in zip(pairs, _minmax([p[1] for p in pairs])):
            scores[cid] = scores.get(cid, 0.0) + w * float(s)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:k]


def mmr(query: np.ndarray, vectors: np.ndarray, k: int, lambda_: float = 0.5) -> list[int]:
    """Maximal marginal relevance: indices of ``vectors`` balancing relevance and diversity."""
    if len(vectors) == 0:
        return []
    rel = vectors @ query
    chosen: list[int] = [int(np.argmax(rel))]
    sim = vectors @ vectors.T
    while len(chosen) < min(k, len(vectors)):
        redundancy = sim[:, chosen].max(axis=1)
        score = lambda_ * rel - (1 - lambda_) * redundancy
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))
    return chosen


class Retriever:
    """Dense / BM25 / hybrid / MMR retrieval over one store and one embedder."""

    def __init__(self, store: VectorStore, embedder, settings: RetrievalSettings):
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.bm25 = BM25Index(store)
        self.doc_prior = DocPrior(store)
        self._reranker = None

    def retrieve(self, query: str, k: int | None = None, mode: str | None = None,
                 filter: Filter | None = None, fusion: str = "mix", fetch_k: int | None = None) -> list[Hit]:
        s = self.settings
        check_question(query)
        k, mode, fetch_k = check_retrieval(k, mode, fetch_k, s)
        fetch = max(fetch_k, k)
        if mode == "dense":
            hits = self.store.search(self.embedder.embed_query(query), fetch if s.reranker else k, filter)
        elif mode == "bm25":
            hits = self._hits(self.bm25.search(query, fetch if s.reranker else k, filter), filter)
        elif mode == "mmr":
            hits = self._mmr(query, k, fetch, filter)
        else:
            dense = self.store.search(self.embedder.embed_query(query), fetch, filter)
            sparse = self.bm25.search(query, fetch, filter)
            by_id = {h.id: h for h in dense}
            if fusion == "rrf":
                fused = fuse_rrf([[h.id for h in dense], [c for c, _ in sparse]], fetch, s.rrf_k,
                                 [s.dense_weight, 1 - s.dense_weight])
            else:
                fused = fuse_mix([(h.id, h.score) for h in dense], sparse, fetch, s.dense_weight)
            missing = [cid for cid, _ in fused if cid not in by_id]
            by_id.update({h.id: h for h in self._hits([(c, 0.0) for c in missing], filter)})
            hits = []
            for cid, score in fused:
                if cid in by_id:
                    h = by_id[cid]
                    hits.append(Hit(h.id, h.text, h.source, h.page, score, h.chunk_index, h.metadata, h.collection))
            if s.doc_prior > 0 and fusion != "rrf":   # prefer chunks of the document the question names
                # (rag/doc_prior.py); the weight is on the mix's [0, 1] scale, not RRF's ~1/60
                hits = apply_doc_prior(hits, self.doc_prior.scores(query), s.doc_prior)
        if s.reranker:
            hits = self._rerank(query, hits)
        return hits[:k]

    def _hits(self, pairs: list[tuple[str, float]], filter: Filter | None) -> list[Hit]:
        """Chunk ids -> Hits (via the store), honouring the filter."""
        if not pairs:
            return []
        get = getattr(self.store, "get", None)
        if get is None:
            chunks = {}
            wanted = {c for c, _ in pairs}
            for batch, _ in self.store.iter_chunks():
                chunks.update({c.id: c for c in batch if c.id in wanted})
        else:
            chunks = {c.id: c for c in get([c for c, _ in pairs])}
        out = []
        for cid, score in pairs:
            c = chunks.get(cid)
            if c is not None and (filter is None or filter.matches(c.source, c.page, c.collection)):
                out.append(Hit.from_chunk(c, score))
        return out

    def _mmr(self, query: str, k: int, fetch: int, filter: Filter | None) -> list[Hit]:
        q = self.embedder.embed_query(query)
        cands = self.store.search(q, fetch, filter)
        if not cands:
            return []
        vecs = self.embedder.embed([h.text for h in cands])  # cache hits: these were embedded at ingest
        return [cands[i] for i in mmr(q, vecs, k, self.settings.mmr_lambda)]

    def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        if self._reranker is None:
            from sentence_transformers import CrossEncoder

            from rag.model_paths import resolve_embedder

            self._reranker = CrossEncoder(resolve_embedder(self.settings.reranker), device="cpu")
        scores = self._reranker.predict([(query, h.text) for h in hits], show_progress_bar=False)
        order = np.argsort(-np.asarray(scores))
        return [Hit(hits[i].id, hits[i].text, hits[i].source, hits[i].page, float(scores[i]),
                    hits[i].chunk_index, hits[i].metadata, hits[i].collection) for i in order]

