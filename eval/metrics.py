"""Metrics for one question, and aggregates with bootstrap confidence intervals.

Answer metrics compare a prediction with one or more reference answers and keep the best score:
exact match and token F1 with SQuAD's normalisation (lower case, no punctuation, no articles
``a an the``, single spaces), and ROUGE-L F-measure (longest common subsequence over
rouge-score's tokens: lower-cased runs of ``[a-z0-9]``, no stemming).

Retrieval metrics compare the retrieved passages with the reference sources: a passage matches
a reference when its source names the same file (equal, or one is a path suffix of the other, or
the base names agree) and, when the reference names pages, its page is one of them.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any, Protocol

import numpy as np

from eval.dataset import Reference

__all__ = [
    "HIT_DEPTHS",
    "answer_recall",
    "answer_scores",
    "best_over",
    "bootstrap_ci",
    "content_tokens",
    "cosine_best",
    "exact_match",
    "first_relevant_rank",
    "groundedness_lexical",
    "hit_matches",
    "mean",
    "normalize_answer",
    "paired_bootstrap_diff",
    "retrieval_scores",
    "rouge_l",
    "source_matches",
    "token_f1",
]

HIT_DEPTHS = (1, 3, 5, 10)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD v1.1's normalisation: lower case, drop punctuation, drop articles, collapse spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1; two empty answers agree (1.0), one empty answer scores 0."""
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")


def _rouge_tokens(text: str) -> list[str]:
    return _ROUGE_TOKEN.findall(text.lower())


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1), the same number as rouge-score's ``rougeL`` without stemming."""
    p, r = _rouge_tokens(prediction), _rouge_tokens(reference)
    if not p or not r:
        return 0.0
    lcs = _lcs(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def best_over(fn: Callable[[str, str], float], prediction: str, references: Iterable[str]) -> float:
    """The best score of ``prediction`` against any reference (SQuAD's metric_max_over_ground_truths)."""
    return max((fn(prediction, r) for r in references), default=0.0)


_CITE_MARKER = re.compile(r"\[\s*(?:passage\s*)?\d+(?:\s*[-,;]\s*\d+)*\s*\]", re.IGNORECASE)


def strip_citations(text: str) -> str:
    """The answer without its ``[n]`` / ``[1, 2]`` / ``[passage 1]`` markers, whitespace collapsed."""
    return " ".join(_CITE_MARKER.sub(" ", text).split())


def answer_scores(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """EM, F1 and ROUGE-L of the answer against its best reference, citation markers removed first
    (``"gold [1]"`` is an exact match for ``gold``: the marker is the chain's, not the answer's)."""
    prediction = strip_citations(prediction)
    return {"em": best_over(exact_match, prediction, references),
            "f1": best_over(token_f1, prediction, references),
            "rougeL": best_over(rouge_l, prediction, references)}


# --- retrieval -------------------------------------------------------------------------------

def _norm_path(s: str) -> str:
    s = s.replace("\\", "/").strip()
    while s.startswith("./"):
        s = s[2:]
    return s.rstrip("/")


def source_matches(retrieved: str, reference: str) -> bool:
    """Same file: equal names, one a path suffix of the other, or equal base names."""
    a, b = _norm_path(retrieved), _norm_path(reference)
    if not a or not b:
        return False
    if a == b or a.endswith("/" + b) or b.endswith("/" + a):
        return True
    return PurePosixPath(a).name == PurePosixPath(b).name


def hit_matches(source: str, page: int, ref: Reference) -> bool:
    if not source_matches(source, ref.source):
        return False
    pages = ref.page_set
    return not pages or int(page or 0) in pages


def citation_scores(answer: Any, refs: Sequence[Reference]) -> dict[str, float | None]:
    """Per-answer citation metrics from a chain :class:`rag.types.Answer`: ``cited`` (at least one valid
    [n]), ``cited_gold`` (a cited passage is on a reference page; None without references),
    ``unsupported`` (a sentence whose cited passages do not hold its words) and ``attributed`` (the
    citation was added by the chain, not written by the model)."""
    cited = [s for s in answer.sources if s.cited]
    gold = float(any(hit_matches(s.source, s.page, r) for s in cited for r in refs)) if refs else None
    return {"cited": float(bool(cited)), "cited_gold": gold, "unsupported": float(bool(answer.unsupported)),
            "attributed": float("attributed" in answer.flags)}


class _HitLike(Protocol):
    source: str
    page: int


def first_relevant_rank(hits: Sequence[_HitLike], refs: Sequence[Reference]) -> int | None:
    """1-based rank of the first retrieved passage matching any reference (None: no match)."""
    for rank, h in enumerate(hits, 1):
        if any(hit_matches(h.source, h.page, r) for r in refs):
            return rank
    return None


def retrieval_scores(hits: Sequence[_HitLike], refs: Sequence[Reference], k: int,
                     depths: Sequence[int] = HIT_DEPTHS) -> dict[str, float | None]:
    """hit@d for each depth, MRR over the whole list, recall@k (share of references found in the top k).

    Returns ``None`` values when the example has no reference sources (excluded from averages).
    """
    names = [f"hit@{d}" for d in depths] + ["mrr", "recall@k"]
    if not refs:
        return dict.fromkeys(names)
    rank = first_relevant_rank(hits, refs)
    out: dict[str, float | None] = {f"hit@{d}": float(rank is not None and rank <= d) for d in depths}
    out["mrr"] = 1.0 / rank if rank else 0.0
    top = hits[:k]
    found = sum(any(hit_matches(h.source, h.page, r) for h in top) for r in refs)
    out["recall@k"] = found / len(refs)
    return out


def answer_recall(references: Sequence[str], contexts: Sequence[str]) -> float:
    """1 when any (normalised) reference answer occurs as whole words in the (normalised) context."""
    ctx = " " + normalize_answer(" ".join(contexts)) + " "
    return float(any(n and f" {n} " in ctx for n in (normalize_answer(r) for r in references)))


_STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves also may
might must shall according passage passages context answer based
""".split())  # noqa: SIM905 - a word list reads better as text
_CITATION = re.compile(r"\[\d+(?:\s*[,-]\s*\d+)*\]")


def content_tokens(text: str) -> list[str]:
    """Normalised tokens minus stopwords and citation markers like ``[1]``."""
    return [t for t in normalize_answer(_CITATION.sub(" ", text)).split() if t not in _STOPWORDS]


def groundedness_lexical(prediction: str, contexts: Sequence[str]) -> float | None:
    """Share of the answer's content tokens that occur in the retrieved context.

    A cheap proxy for faithfulness (an answer copied from the passages scores 1, an invented one
    near 0); ``None`` when the answer has no content tokens.
    """
    toks = content_tokens(prediction)
    if not toks:
        return None
    ctx = set(normalize_answer(" ".join(contexts)).split())
    supported = sum(1 for t in toks if t in ctx or t.rstrip("s") in ctx or t + "s" in ctx)
    return supported / len(toks)


def cosine_best(pred_vec: np.ndarray, ref_vecs: np.ndarray) -> float:
    """Highest cosine similarity between one vector and any row of ``ref_vecs``."""
    p = pred_vec / (np.linalg.norm(pred_vec) or 1.0)
    r = ref_vecs / np.maximum(np.linalg.norm(ref_vecs, axis=1, keepdims=True), 1e-12)
    return float(np.max(r @ p))


# --- aggregates ------------------------------------------------------------------------------

def _values(values: Iterable[Any]) -> np.ndarray:
    return np.asarray([float(v) for v in values if v is not None and not np.isnan(float(v))], dtype=np.float64)


def mean(values: Iterable[Any]) -> float | None:
    arr = _values(values)
    return float(arr.mean()) if len(arr) else None


def bootstrap_ci(values: Iterable[Any], *, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval of the mean (``None`` values are dropped).

    Seeded, so the same values always give the same interval. ``None`` for no values.
    """
    arr = _values(values)
    if len(arr) == 0:
        return None
    if len(arr) == 1 or n_boot <= 0:
        m = float(arr.mean())
        return m, m
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // len(arr))  # bound memory for large sets
    for i in range(0, n_boot, step):
        idx = rng.integers(0, len(arr), size=(min(step, n_boot - i), len(arr)))
        means[i:i + len(idx)] = arr[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_bootstrap_diff(a: Sequence[Any], b: Sequence[Any], *, n_boot: int = 1000, alpha: float = 0.05,
                          seed: int = 0) -> tuple[float, float, float] | None:
    """Mean of ``a - b`` over questions both scored, with its bootstrap interval: (diff, lo, hi)."""
    pairs = [(float(x), float(y)) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return None
    d = np.asarray([x - y for x, y in pairs])
    ci = bootstrap_ci(d, n_boot=n_boot, alpha=alpha, seed=seed)
    assert ci is not None
    return float(d.mean()), ci[0], ci[1]
