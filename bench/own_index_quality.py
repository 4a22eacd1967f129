"""Retrieval quality of each ingest pipeline's own index: "faster" only counts at equal quality.

Each pipeline of bench/ingest_bench.py ingests the shared SQuAD PDFs its own way (its loader,
splitter, embedder settings and store) and then answers the shared questions with its own default
search; the score is hit@5 of the gold page (file name and 1-based page), the same question set
bench/retrieval_bench.py uses. This runs inside the pipeline's subprocess, after the timed part.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQUAD = ROOT.parent / "shared" / "data" / "squad"
K = 5

# (question) -> [(file name, 1-based page), ...] best first
Search = Callable[[str], list[tuple[str, int]]]


# Every third question (1,012 of 3,036, all ten articles): LangChain embeds queries one at a time,
# and the whole set took 4 min per pipeline on a busy box; a 95% interval is still about +-1.5 pt.
STRIDE = 3


def load_questions(path: Path, stride: int = STRIDE) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r.get("sources")][::stride]


def hit_at_k(search: Search, questions: list[dict], k: int = K) -> dict:
    """Share of questions whose gold page is among the first ``k`` results."""
    hits = 0
    for q in questions:
        gold = {(Path(s["source"]).name, int(s["page"])) for s in q["sources"]}
        got = search(q["question"])[:k]
        hits += any((Path(f).name, int(p)) in gold for f, p in got)
    return {"questions": len(questions), f"hit@{k}": hits / len(questions) if questions else 0.0}


# -- each pipeline's search over its own in-memory index (no reload: FAISS.load_local would unpickle)
def ragtune_search(rag) -> Search:
    return lambda q: [(Path(h.source).name, int(h.page)) for h in rag.retrieve(q, k=K)]


def langchain_search(store) -> Search:
    # PyPDFLoader numbers pages from 0.
    return lambda q: [(Path(d.metadata["source"]).name, int(d.metadata["page"]) + 1)
                      for d in store.similarity_search(q, k=K)]


def llamaindex_search(index) -> Search:
    retriever = index.as_retriever(similarity_top_k=K)
    return lambda q: [(n.node.metadata["file_name"], int(n.node.metadata["page_label"]))
                      for n in retriever.retrieve(q)]
