"""A document-level score for hybrid retrieval: does the question name the document?

A 10-Q chunk that reads "Net sales increased 13% ..." matches "What were Intel's net sales in Q2
2023?" as well in every quarter's filing, and in Amazon's; what tells them apart is the document's
identity (company, form, quarter), which every chunk carries in its context line
(``metadata["context"]``, see rag/chunking.py). Here the context-line parts shared by at least half
of a document's chunks make one short text per document; BM25 over those texts scores how well the
question names each document (scaled so the best document gets 1), and hybrid retrieval adds
``weight * document score`` to each candidate's fused score: a hierarchical retrieval where the
document vote breaks near-ties between chunks of look-alike documents.

A question that names no document scores every document 0 (or all equally), so the chunk order is
unchanged; so is a corpus without context lines (SciFact abstracts added as plain texts). Measured on
the shared sets in bench/results/sec.md and docs/documents.md.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any

from rag.types import Hit

SHARE = 0.5   # a context part names the document when at least this share of its chunks carry it
DocKey = tuple[str, str]   # (collection, source)


def context_parts(metadata: dict[str, Any] | None) -> set[str]:
    """The ' | '-separated parts of a chunk's context line (empty without one)."""
    line = (metadata or {}).get("context") or ""
    line = line.strip()
    if line.startswith("[") and line.endswith("]"):
        line = line[1:-1]
    return {p.strip() for p in line.split(" | ") if p.strip()}


def document_texts(chunks) -> dict[DocKey, str]:
    """Per document, the context parts most of its chunks share (its title and identity, not the
    section or table parts that change along the document). Documents without any are left out."""
    parts: dict[DocKey, Counter] = defaultdict(Counter)
    n: Counter = Counter()
    for c in chunks:
        key = (c.collection, c.source)
        n[key] += 1
        parts[key].update(context_parts(c.metadata))
    out = {}
    for key, counts in parts.items():
        keep = [p for p, k in counts.items() if k >= SHARE * n[key]]
        if keep:
            out[key] = " | ".join(sorted(keep))
    return out


class DocPrior:
    """BM25 over the document texts of a store, rebuilt when the store's version changes."""

    def __init__(self, store, language: str = "english"):
        self.store = store
        self.language = language
        self._version: Any = None
        self._keys: list[DocKey] = []
        self._retriever = None
        self._lock = threading.Lock()

    def _tokenize(self, texts: list[str]):
        import bm25s
        import Stemmer

        return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer(self.language), show_progress=False)

    def _refresh(self) -> None:
        import bm25s

        version_fn = getattr(self.store, "version", None)
        version = version_fn() if version_fn else self.store.count()
        if version == self._version and self._retriever is not None:
            return
        chunks = [c for batch, _ in self.store.iter_chunks() for c in batch]
        texts = document_texts(chunks)
        self._keys = list(texts)
        retriever = bm25s.BM25()
        if self._keys:
            retriever.index(self._tokenize([texts[k] for k in self._keys]), show_progress=False)
        self._retriever, self._version = retriever, version

    def scores(self, query: str) -> dict[DocKey, float]:
        """Document -> how well the question names it, in [0, 1] (1 = the best match); {} = none."""
        with self._lock:
            self._refresh()
            if not self._keys:
                return {}
            tokens = self._tokenize([query])
            if not tokens.vocab or not any(len(t) for t in tokens.ids):
                return {}
            docs, scores = self._retriever.retrieve(tokens, k=len(self._keys), show_progress=False, n_threads=1)
        top = float(scores[0].max()) if len(scores[0]) else 0.0
        if top <= 0:
            return {}
        return {self._keys[int(d)]: float(s) / top for d, s in zip(docs[0], scores[0]) if s > 0}


def apply(hits: list[Hit], doc_scores: dict[DocKey, float], weight: float) -> list[Hit]:
    """Hits re-scored by ``score + weight * document score``, best first (stable for ties)."""
    if not doc_scores or weight <= 0:
        return hits
    scored = [(h.score + weight * doc_scores.get((h.collection, h.source), 0.0), i, h) for i, h in enumerate(hits)]
    scored.sort(key=lambda x: (-x[0], x[1]))
    return [Hit(h.id, h.text, h.source, h.page, s, h.chunk_index, h.metadata, h.collection) for s, _, h in scored]
