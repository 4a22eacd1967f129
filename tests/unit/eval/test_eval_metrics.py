"""eval.metrics: SQuAD normalisation, EM/F1, ROUGE-L, retrieval matching, groundedness, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from eval import metrics as M
from eval.dataset import Reference


@pytest.mark.parametrize("raw, norm", [
    ("The Eiffel Tower", "eiffel tower"),
    ("  a  cat,  AN apple; the end. ", "cat apple end"),
    ("Denver Broncos!", "denver broncos"),
    ("theatre another anthem", "theatre another anthem"),   # articles only as whole words
    ("U.S.-based", "usbased"),                                # punctuation removed, not replaced
    ("", ""),
])
def test_squad_normalisation(raw, norm):
    assert M.normalize_answer(raw) == norm


def test_exact_match_and_f1_follow_squad():
    assert M.exact_match("the Denver Broncos", "Denver Broncos.") == 1.0
    assert M.exact_match("Broncos", "Denver Broncos") == 0.0
    # pred {denver, broncos, won}, ref {denver, broncos}: P = 2/3, R = 1 -> F1 = 0.8
    assert M.token_f1("Denver Broncos won", "the Denver Broncos") == pytest.approx(0.8)
    assert M.token_f1("nothing in common", "Denver Broncos") == 0.0
    assert M.token_f1("", "") == 1.0 and M.token_f1("", "x") == 0.0
    # repeated tokens count with multiplicity
    assert M.token_f1("a b b", "b b c") == pytest.approx(2 * (2 / 2) * (2 / 3) / ((2 / 2) + (2 / 3)))


def test_best_over_references():
    scores = M.answer_scores("Santa Clara, California", ["Levi's Stadium", "Santa Clara, California"])
    assert scores == {"em": 1.0, "f1": 1.0, "rougeL": 1.0}
    assert M.best_over(M.token_f1, "x", []) == 0.0


def test_rouge_l():
    # LCS("the cat sat on the mat", "the cat is on the mat") = 5 of 6 tokens each way
    assert M.rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert M.rouge_l("A B C", "c b a") == pytest.approx(1 / 3)
    assert M.rouge_l("", "x") == 0.0 and M.rouge_l("x", "y") == 0.0


@pytest.mark.parametrize("retrieved, reference, same", [
    ("gettysburg.pdf", "gettysburg.pdf", True),
    ("docs/gettysburg.pdf", "gettysburg.pdf", True),      # basename / path suffix
    ("./a/b/x.pdf", "b/x.pdf", True),
    ("a\\b\\x.pdf", "b/x.pdf", True),
    ("x.pdf", "y.pdf", False),
    ("", "x.pdf", False),
])
def test_source_matching(retrieved, reference, same):
    assert M.source_matches(retrieved, reference) is same


class H:
    def __init__(self, source, page, text=""):
        self.source, self.page, self.text = source, page, text


def test_retrieval_scores_pages_and_ranks():
    hits = [H("a.pdf", 1), H("b.pdf", 3), H("a.pdf", 2), H("c.md", 0)]
    s = M.retrieval_scores(hits, [Reference("a.pdf", 2)], k=5)
    assert s["hit@1"] == 0.0 and s["hit@3"] == 1.0 and s["mrr"] == pytest.approx(1 / 3) and s["recall@k"] == 1.0
    # page 0 = any page of the file
    assert M.retrieval_scores(hits, [Reference("b.pdf", 0)], k=5)["mrr"] == 0.5
    # a page range (SQuAD paragraphs that cross a page break)
    assert M.retrieval_scores(hits, [Reference("b.pdf", 2, (2, 3))], k=5)["hit@3"] == 1.0
    # recall@k: share of references found in the top k
    s = M.retrieval_scores(hits, [Reference("a.pdf", 1), Reference("c.md", 0)], k=2)
    assert s["recall@k"] == 0.5 and s["hit@1"] == 1.0
    miss = M.retrieval_scores(hits, [Reference("z.pdf", 1)], k=5)
    assert miss["mrr"] == 0.0 and miss["hit@10"] == 0.0
    assert all(v is None for v in M.retrieval_scores(hits, [], k=5).values())


def test_answer_recall_uses_normalised_whole_words():
    ctx = ["The Senate shall have the sole Power", "of Impeachment.  Age of thirty\nYears"]
    assert M.answer_recall(["thirty Years"], ctx) == 1.0
    assert M.answer_recall(["thirt"], ctx) == 0.0          # not a word-level match
    assert M.answer_recall(["forty", "sole power"], ctx) == 1.0


def test_groundedness_lexical():
    ctx = ["Lincoln delivered the address on November 19, 1863 at Gettysburg."]
    assert M.groundedness_lexical("He delivered it on November 19, 1863 [1].", ctx) == 1.0
    g = M.groundedness_lexical("Lincoln spoke in Boston", ctx)
    assert g == pytest.approx(1 / 3)                        # lincoln yes; spoke, boston no
    assert M.groundedness_lexical("It is the [2].", ctx) is None  # no content words


def test_cosine_best():
    assert M.cosine_best(np.array([1.0, 0.0]), np.array([[0.0, 2.0], [3.0, 0.0]])) == pytest.approx(1.0)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    vals = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1] * 5
    a = M.bootstrap_ci(vals, seed=3)
    assert a == M.bootstrap_ci(vals, seed=3)
    lo, hi = a
    assert lo < np.mean(vals) < hi and 0 <= lo and hi <= 1
    assert hi - lo < 0.35
    assert M.bootstrap_ci([None, 0.5]) == (0.5, 0.5)
    assert M.bootstrap_ci([]) is None and M.mean([None]) is None
    assert M.bootstrap_ci([1.0] * 10) == (1.0, 1.0)


def test_paired_bootstrap_diff():
    a = [1.0] * 30
    b = [0.0] * 10 + [1.0] * 20
    d, lo, hi = M.paired_bootstrap_diff(a, b)
    assert d == pytest.approx(1 / 3) and 0 < lo <= d <= hi
    assert M.paired_bootstrap_diff([None], [1.0]) is None


def test_citation_scores_count_valid_gold_unsupported_and_attributed():
    from rag.types import Answer, Source

    def source(n, name, page, cited):
        return Source(n=n, source=name, page=page, score=1.0, text="t", cited=cited)

    refs = [Reference(source="Normans.pdf", page=2)]
    ans = Answer(text="Rollo [2]", sources=[source(1, "Normans.pdf", 1, False), source(2, "Normans.pdf", 2, True)],
                 citations=[2], flags=["attributed"])
    assert M.citation_scores(ans, refs) == {"cited": 1.0, "cited_gold": 1.0, "unsupported": 0.0, "attributed": 1.0}
    wrong = Answer(text="Rollo [1]", sources=[source(1, "Normans.pdf", 1, True)], citations=[1],
                   unsupported=[{"sentence": "Rollo [1]", "citations": [1]}])
    assert M.citation_scores(wrong, refs) == {"cited": 1.0, "cited_gold": 0.0, "unsupported": 1.0, "attributed": 0.0}
    none = Answer(text="Rollo", sources=[source(1, "Normans.pdf", 2, False)])
    assert M.citation_scores(none, [])["cited"] == 0.0 and M.citation_scores(none, [])["cited_gold"] is None


def test_citation_markers_are_removed_before_answer_scoring():
    # The chain's "[n]" is not part of the answer: "gold [1]" is an exact match for "gold" (it scored
    # F1 0.67, EM 0 before, which put every cited answer of the 300-question model table at EM 0).
    assert M.answer_scores("gold [1]", ["gold"]) == {"em": 1.0, "f1": 1.0, "rougeL": 1.0}
    assert M.answer_scores("Denver Broncos [1, 2] [Passage 3]", ["Denver Broncos"])["em"] == 1.0
    assert M.answer_scores("1995 [1-2]", ["1978"])["f1"] == 0.0
    assert M.strip_citations("140 grams [1].") == "140 grams ."
