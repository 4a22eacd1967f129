"""Citations in an answer: parse ``[n]`` markers, check each against the passages it names, and
attribute an uncited answer to the passage it shares most words with (for the chain, the eval
metrics and the UI alike)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rag.types import Source

_CITE = re.compile(r"\[\s*(?:passages?|sources?|docs?|documents?)?\s*(\d+(?:\s*(?:,|;|-|–|and)\s*\d+)*)\s*\]",
                   re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself no nor not now of off on once only or other our ours ourselves out over own
passage passages same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which while
who whom why will with would you your yours yourself yourselves according context answer question
source sources document documents says said know don does doesn
""".split())  # noqa: SIM905 - a word list reads better as text
DECLINE = re.compile(r"\b(?:don'?t|do not|doesn'?t|does not|cannot|can'?t|unable to)\s+"
                      r"(?:know|say|find|answer|determine|tell)|\bnot (?:mentioned|provided|stated|"
                      r"specified|available|contain)|\bno (?:information|mention)", re.IGNORECASE)


def _expand(spec: str) -> list[int]:
    """``'1, 3-5'`` -> ``[1, 3, 4, 5]`` (ranges capped, so '[1-99999]' cannot blow up)."""
    nums: list[int] = []
    for part in re.split(r"\s*(?:,|;|\band\b)\s*", spec.strip()):
        m = re.fullmatch(r"(\d+)\s*[-–]\s*(\d+)", part)
        if m:
            lo, hi = int(m[1]), int(m[2])
            nums.extend(range(lo, hi + 1) if 0 <= hi - lo <= 50 else (lo, hi))
        elif part.isdigit():
            nums.append(int(part))
    return nums


def parse_citations(text: str) -> list[tuple[str, list[int]]]:
    """Split an answer into sentences, each with the passage numbers it cites (in order).

    A citation that opens the next sentence-less line is kept with the sentence before it.
    """
    out: list[tuple[str, list[int]]] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        nums: list[int] = []
        for m in _CITE.finditer(sentence):
            nums.extend(_expand(m.group(1)))
        bare = _CITE.sub("", sentence).strip()
        if not _WORD.search(bare) and out:  # "[2]" alone after a sentence end belongs to it
            prev, prev_nums = out[-1]
            out[-1] = (prev + " " + sentence, prev_nums + nums)
            continue
        out.append((sentence, nums))
    return out


def content_words(text: str) -> set[str]:
    """Lower-cased words of 3+ characters that are not stopwords, crudely de-pluralised."""
    words = set()
    for w in _WORD.findall(_CITE.sub(" ", text).lower()):
        if w in STOPWORDS or (len(w) < 3 and not w.isdigit()):
            continue
        words.add(w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w)
    return words


def verify_citations(text: str, sources: Sequence[Source]) -> dict[str, Any]:
    """Check an answer's citations against the passages that were in its context.

    Returns:
        ``{"citations": [valid numbers, first-seen order], "invalid": [numbers with no passage],
        "unsupported": [{"sentence", "citations"}]}``. A sentence is unsupported when none of the
        passages it cites shares at least ``min(2, its content words)`` content words with it.
    """
    by_n = {s.n: s for s in sources}
    words = {s.n: content_words(s.text + " " + s.source) for s in sources}
    valid: list[int] = []
    invalid: list[int] = []
    unsupported: list[dict[str, Any]] = []
    for sentence, nums in parse_citations(text):
        if not nums:
            continue
        good = [n for n in nums if n in by_n]
        for n in nums:
            target = valid if n in by_n else invalid
            if n not in target:
                target.append(n)
        mine = content_words(sentence)
        need = min(2, len(mine))
        if good and need and not any(len(mine & words[n]) >= need for n in good):
            unsupported.append({"sentence": sentence, "citations": nums})
    return {"citations": valid, "invalid": invalid, "unsupported": unsupported}


def supporting_passage(text: str, sources: Sequence[Source]) -> Source | None:
    """The one passage an uncited answer can be credited to, or None.

    The passage must hold every content word of a short answer (up to three words: "140 grams",
    "Rollo"), or at least two thirds of a longer one's (a stricter test than :func:`verify_citations`
    applies to the model's own citations); on a tie the better-ranked passage wins.
    """
    mine = content_words(text)
    if not mine or not sources:
        return None
    shared = sorted(((len(mine & content_words(s.text)), -s.n, s) for s in sources), key=lambda t: t[:2],
                    reverse=True)
    best, passage = shared[0][0], shared[0][2]
    need = len(mine) if len(mine) <= 3 else -(-2 * len(mine) // 3)
    return passage if best >= need else None


def attribute(text: str, sources: Sequence[Source]) -> Source:
    """The passage an uncited answer most likely came from: most content words shared with it,
    the better-ranked passage on a tie (so the top one when nothing overlaps)."""
    mine = content_words(text)
    return max(sources, key=lambda s: (len(mine & content_words(s.text)), -s.n))
