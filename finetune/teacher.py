"""Distillation targets from a teacher LLM: the RAFT prompt, the answer filter and the answer cache.

A teacher (any LLM spec: a catalogue name such as ``qwen2.5-coder-1.5b``, ``gguf:``, ``hf:``,
``openai:``) answers each synthesised question from its golden passage shuffled among distractor
passages retrieved for the question (RAFT, Zhang et al. 2024), in the chain's own prompt
(:func:`rag.chain.build_messages`) plus one line asking for a short answer that cites its passage.
:func:`filter_answer` keeps an answer only when it cites the golden passage, is short, and its
words come from that passage; the kept text (markers removed) becomes the student's target, cited
again as ``[n]`` where the golden passage sits in the *student's* prompt (the loop's ``finetune``
stage builds that prompt, so the citation always points at the layout the student trains on).

:class:`AnswerCache` keeps every teacher reply in an append-only JSONL, one line per reply,
flushed as it is written, keyed by :func:`cache_key` (chunk text hash, question, teacher spec,
prompt version): a killed run loses at most the reply being generated and a re-run generates none
of the replies it already holds. Pure functions and plain files: no model is loaded here.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from rag import chain
from rag.citations import DECLINE, parse_citations, supporting_passage
from rag.types import Hit, Source

__all__ = ["PROMPT_VERSION", "QUESTION_VERSION", "TEACH_STYLE", "TEACH_STYLES", "AnswerCache", "Verdict", "cache_key",
           "filter_answer", "raft_passages", "teacher_messages"]

# Bump when the prompt changes: the version is part of every cache key, so old replies are not reused.
PROMPT_VERSION = "teach-v1"
QUESTION_VERSION = "teach-q-v1"
TEACH_STYLE = ("Reply with one short sentence that answers the question from the passage that contains "
               "the answer, and end it with that passage's number in brackets, like [2].")
# The answer style the student learns. "sentence" teaches whole sentences; "phrase" the bare answer
# span (SQuAD's references are phrases: a sentence answer that holds the right span still scores
# low token F1, and the sentence-taught student's answers stayed at 14 words).
TEACH_STYLES = {
    "sentence": TEACH_STYLE,
    "phrase": ("Reply with only the shortest exact phrase from the passage that contains the answer (a name, "
               "number, date or a few words, not a sentence), then that passage's number in brackets, "
               "like: Denver Broncos [2]"),
}
_MARKERS = re.compile(r"\[\s*(?:passages?|sources?|docs?|documents?)?\s*\d+(?:\s*(?:,|;|-|–|and)\s*\d+)*\s*\]",
                      re.IGNORECASE)


def cache_key(chunk_text: str, question: str, teacher: str, version: str = PROMPT_VERSION) -> str:
    """sha256 over (sha256 of the golden chunk's text, question, teacher spec, prompt version)."""
    chunk_hash = hashlib.sha256(chunk_text.encode("utf-8")).hexdigest()
    return hashlib.sha256(json.dumps([chunk_hash, question, teacher, version]).encode("utf-8")).hexdigest()


def raft_passages(gold: Hit, retrieved: Sequence[Hit], distractors: int, seed: str,
                  evidence: str = "") -> tuple[list[Hit], int]:
    """The golden passage among up to ``distractors`` retrieved ones, in an order seeded by ``seed``
    (e.g. the question id). A distractor is never the golden chunk, a copy of its text, or a chunk
    holding the ``evidence`` sentence too (overlapping neighbours): the answer must have one source.

    Returns:
        (the passages in prompt order, the golden passage's number in the prompt, 1-based)
    """
    def flat(text: str) -> str:
        return " ".join(text.lower().split())

    gold_text, evidence = flat(gold.text), flat(evidence)
    others = [h for h in retrieved if h.id != gold.id and flat(h.text) != gold_text
              and not (evidence and evidence in flat(h.text))][:distractors]
    hits = [gold, *others]
    random.Random(hashlib.sha256(seed.encode("utf-8")).hexdigest()).shuffle(hits)
    return hits, hits.index(gold) + 1


def teacher_messages(question: str, hits: Sequence[Hit], style: str = "sentence") -> list[dict[str, str]]:
    """The chain's prompt over ``hits`` (no per-family style line) plus the teacher's answer style
    (a key of :data:`TEACH_STYLES`)."""
    if style not in TEACH_STYLES:
        raise ValueError(f"teacher.style must be one of {sorted(TEACH_STYLES)}, not {style!r}")
    messages = chain.build_messages(question, hits)
    messages[-1] = {**messages[-1], "content": messages[-1]["content"] + "\n" + TEACH_STYLES[style]}
    return messages


@dataclass(frozen=True, slots=True)
class Verdict:
    """``target`` (the kept answer without markers) when ``reason`` is '', else why it was dropped."""

    target: str = ""
    reason: str = ""
    extra_citations: bool = False  # it also cited other passages (those markers are not kept)
    attributed: bool = False       # uncited, kept because it is grounded in the golden passage
    recited: bool = False          # cited only other passages, kept because grounded in the golden one


def filter_answer(answer: str, gold_n: int, gold_text: str, max_words: int, *, attribute: bool = False,
                  recite: bool = False) -> Verdict:
    """Keep a teacher answer only if it cites the golden passage, is short, and is grounded in it.

    Reasons, checked in this order: ``empty``, ``declined`` ("I don't know", "not mentioned"),
    ``no_citation`` (no ``[n]`` at all; with ``attribute`` such an answer goes on through the other
    checks and is kept as ``attributed``, as the chain credits an uncited answer),
    ``wrong_citation`` (cites only other passages; with ``recite`` such an answer goes on through
    the other checks and is kept as ``recited``: the student's target is cited at the golden
    passage either way, and on SQuAD 31 of the 1.5B teacher's 33 such answers were grounded in the
    golden passage, the number alone wrong), ``too_long`` (more than ``max_words`` words
    without markers), ``not_grounded`` (the golden passage lacks its content words: all of a 1-3
    word answer, two thirds of a longer one, as :func:`rag.citations.supporting_passage` decides).
    """
    text = " ".join(answer.split())
    if not _MARKERS.sub("", text).strip(" .,;:"):
        return Verdict(reason="empty")
    if DECLINE.search(text):
        return Verdict(reason="declined")
    cited = [n for _, nums in parse_citations(text) for n in nums]
    if not cited and not attribute:
        return Verdict(reason="no_citation")
    recited = bool(cited) and gold_n not in cited
    if recited and not recite:
        return Verdict(reason="wrong_citation")
    body = " ".join(_MARKERS.sub(" ", text).split())
    body = re.sub(r"\s+([.,;:!?])", r"\1", body).rstrip(" ,;:").rstrip(".").strip()
    if len(body.split()) > max_words:
        return Verdict(reason="too_long")
    if supporting_passage(body, [Source(n=1, source="", page=0, score=0.0, text=gold_text)]) is None:
        return Verdict(reason="not_grounded")
    return Verdict(target=body, extra_citations=any(n != gold_n for n in cited) and not recited,
                   attributed=not cited, recited=recited)


class AnswerCache:
    """Teacher replies by key in an append-only JSONL (``{"key": ..., **record}`` per line).

    Each :meth:`put` appends one line and flushes it to the OS, so a killed process keeps every
    reply it finished. A torn last line (killed mid-write) is skipped on load and overwritten by
    the next reply's line.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, dict[str, Any]] = {}
        good_end = 0
        if self.path.exists():
            with self.path.open("rb") as fh:
                for line in fh:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        break  # a torn final line: the reply it held is generated again
                    if not line.endswith(b"\n") or not isinstance(row, dict) or "key" not in row:
                        break
                    self._rows[row["key"]] = row
                    good_end += len(line)
            if good_end < self.path.stat().st_size:
                with self.path.open("r+b") as fh:
                    fh.truncate(good_end)
        self._fh = self.path.open("a", encoding="utf-8")

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._rows.get(key)

    def put(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        row = {"key": key, **record}
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._rows[key] = row
        return row

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
