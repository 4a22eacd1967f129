"""The document prior of hybrid retrieval (rag/doc_prior.py) on tiny hand-made filings in a real store."""

import numpy as np
import pytest

from rag.doc_prior import DocPrior, apply, document_texts
from rag.retrieval import Retriever
from rag.settings import RetrievalSettings
from rag.stores import open_store
from rag.types import Chunk, Hit

IDS = {"AMZN Q1": "Amazon.com, Inc. (AMZN) | Form 10-Q | quarter ended March 31, 2023 (Q1 2023)",
       "AMZN Q2": "Amazon.com, Inc. (AMZN) | Form 10-Q | quarter ended June 30, 2023 (Q2 2023)",
       "INTC Q2": "Intel Corporation (INTC) | Form 10-Q | quarter ended July 1, 2023 (Q2 2023)"}
BODY = "Net sales increased: net sales in the quarter rose on higher unit sales."
OTHER = "Operating income rose on lower shipping costs, fulfillment savings and a stronger mix. " * 4


def _chunks(with_context: bool = True) -> list[Chunk]:
    out = []
    for src, ident in IDS.items():
        body = OTHER if src == "AMZN Q1" else BODY   # without the prior, its "net sales" chunks lose
        for i, section in enumerate(("Results of Operations", "Liquidity", "Risk Factors")):
            line = f"[{ident} | {section}]"
            meta = {"context": line} if with_context else {}
            text = f"{line}\n{body}" if with_context else body
            out.append(Chunk(f"{src}-{i}", text, f"{src}.pdf", i + 1, i, "", meta))
    return out


class SameVector:
    """Stand-in embedder: every text gets one vector, so dense ties and only the prior decides
    (the embedder is not what is tested here; rag's real embedders are tested elsewhere)."""

    dim = 4

    def embed_query(self, text):
        return np.array([1, 0, 0, 0], dtype=np.float32)


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "index"))
    chunks = _chunks()
    s.upsert(chunks, np.tile(np.array([1, 0, 0, 0], dtype=np.float32), (len(chunks), 1)))
    yield s
    s.close()


def test_document_texts_keep_shared_parts_only():
    texts = document_texts(_chunks())
    assert set(texts) == {("default", f"{s}.pdf") for s in IDS}
    amzn = texts[("default", "AMZN Q1.pdf")]
    assert "quarter ended March 31, 2023 (Q1 2023)" in amzn and "Amazon.com, Inc. (AMZN)" in amzn
    assert "Liquidity" not in amzn and "Results of Operations" not in amzn   # one chunk in two: a section
    assert document_texts(_chunks(with_context=False)) == {}


def test_scores_prefer_the_named_document(store):
    prior = DocPrior(store)
    s = prior.scores("What were Intel's net sales in Q2 2023?")
    assert max(s, key=s.get) == ("default", "INTC Q2.pdf") and s[("default", "INTC Q2.pdf")] == 1.0
    assert s.get(("default", "AMZN Q2.pdf"), 0) < 1.0 and s.get(("default", "AMZN Q1.pdf"), 0) < s[("default", "AMZN Q2.pdf")]
    assert prior.scores("How did net sales change?") == {}   # names no document


def test_hybrid_moves_the_named_filing_up(store):
    q = "What were Amazon's net sales in Q1 2023?"   # AMZN Q1's chunks never say "net sales"

    def order(weight):
        hits = Retriever(store, SameVector(), RetrievalSettings(doc_prior=weight)).retrieve(q, k=9, mode="hybrid")
        return list(dict.fromkeys(h.source for h in hits))

    assert order(0.0) == ["AMZN Q2.pdf", "INTC Q2.pdf", "AMZN Q1.pdf"]
    assert order(0.3) == ["AMZN Q2.pdf", "AMZN Q1.pdf", "INTC Q2.pdf"]   # the other company drops
    assert order(1.0)[0] == "AMZN Q1.pdf"


def test_ties_and_unnamed_questions_keep_the_order():
    hits = [Hit(f"c{i}", "t", f"d{i % 2}.pdf", 1, 1.0 - i / 10) for i in range(4)]
    same = {("default", "d0.pdf"): 1.0, ("default", "d1.pdf"): 1.0}
    assert [h.id for h in apply(hits, same, 0.3)] == [h.id for h in hits]
    assert apply(hits, {}, 0.3) == hits
    assert [h.id for h in apply(hits, {("default", "d1.pdf"): 1.0}, 0.5)] == ["c1", "c3", "c0", "c2"]
