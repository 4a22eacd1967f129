"""Sentence selection: the LLM reads only the retrieved sentences most like the question.

Small local models read long context badly and slowly: the Qwen 0.5B picks the wrong span from
five whole passages (~1,150 prompt tokens) far more often than from the ten best sentences of those
passages, and prefilling the whole passages is most of its latency on a CPU. So, after retrieval
and before the prompt is packed, every retrieved passage is split into sentences, the question and
the sentences are embedded with the index's own embedder, and only the ``n`` most similar sentences
are kept, in passage (rank) order and in their order within the passage. A passage none of whose
sentences is kept is left out of the prompt (and so out of the answer's sources); the others keep
their source, page and metadata, so citations still point at the page. Retrieval itself and its
metrics are unchanged. The measurements behind the default are in docs/llms.md ("Sentence selection").

A table (rows without sentence punctuation) is one "sentence" here, so it is kept or dropped whole.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.types import Hit

__all__ = ["GAP", "is_selection_of", "select_sentences", "split_sentences"]

# A sentence ends at . ! or ? (closing quotes/brackets included) before a space and a capital,
# digit, quote or bracket: "3.5 times" and "U.S. law" do not end one. Line breaks inside a
# paragraph (PDF text keeps its line ends) do not end one either.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+(?=[A-Z0-9\"'“‘(\[])")
MIN_SENTENCE_CHARS = 4
GAP = " … "  # between two kept sentences that were not next to each other in the passage


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, each with its whitespace collapsed; fragments under 4 characters dropped."""
    parts = (" ".join(p.split()) for p in _SENTENCE_END.split(text))
    return [p for p in parts if len(p) >= MIN_SENTENCE_CHARS]


_PARAGRAPH = re.compile(r"\n\s*\n")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")  # a Markdown heading line (ingest writes headings so)


@dataclass(frozen=True, slots=True)
class _Unit:
    para: int      # paragraph number within the passage
    heading: str   # the heading line above it ('' = none)
    text: str      # the sentence


def _units(body: str) -> list[_Unit]:
    """The passage body as sentences, each with its paragraph and heading: blank lines and heading
    lines end a sentence (a heading is context for what follows, never scored itself)."""
    out: list[_Unit] = []
    heading, para, lines = "", 0, []

    def flush() -> None:
        nonlocal para
        if lines:
            out.extend(_Unit(para, heading, s) for s in split_sentences("\n".join(lines)))
            para += 1
            lines.clear()

    for block in _PARAGRAPH.split(body):
        for line in block.split("\n"):
            if _HEADING.match(line):
                flush()
                heading = " ".join(line.split())
            else:
                lines.append(line)
        flush()
    return out


def _body(hit: Hit) -> tuple[str, str]:
    """(the chunk's context line or '', its body): the context line (document identity) is kept
    as is, never scored as a sentence."""
    context = str((hit.metadata or {}).get("context") or "")
    text = hit.text
    if context and text.startswith(context):
        return context, text[len(context):].lstrip("\n")
    return "", text


def _compose(context: str, units: Sequence[_Unit], kept: Sequence[int]) -> str:
    """The kept sentences as text: one space between neighbours, :data:`GAP` where sentences of a
    paragraph were left out, a line break between paragraphs, each heading once above its part."""
    parts: list[str] = [context] if context else []
    last: int | None = None
    heading = ""
    for j in kept:
        u = units[j]
        if u.heading and u.heading != heading:
            parts.append(u.heading)
            last = None
        heading = u.heading
        if last is not None and units[last].para == u.para:
            parts[-1] += (" " if j == last + 1 else GAP) + u.text
        else:
            parts.append(u.text)
        last = j
    return "\n".join(parts)


def select_sentences(question: str, hits: Sequence[Hit], embed: Callable[[list[str]], np.ndarray],
                     n: int) -> list[Hit]:
    """The hits cut to the ``n`` sentences most similar to ``question`` (cosine of ``embed``'s
    vectors), in rank order; hits with no kept sentence are dropped. ``n <= 0``, or no more than
    ``n`` sentences in all, returns the hits unchanged (nothing is embedded)."""
    hits = list(hits)
    parsed = [(context, _units(body)) for context, body in map(_body, hits)]
    owners = [(i, j) for i, (_, units) in enumerate(parsed) for j in range(len(units))]
    if n <= 0 or len(owners) <= n:
        return hits
    texts = [u.text for _, units in parsed for u in units]
    vectors = np.asarray(embed([question, *texts]), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = vectors[1:] @ vectors[0]
    chosen: dict[int, list[int]] = {}
    for idx in sorted(np.argsort(-sims, kind="stable")[:n].tolist()):
        i, j = owners[idx]
        chosen.setdefault(i, []).append(j)
    return [dataclasses.replace(hit, text=_compose(parsed[i][0], parsed[i][1], chosen[i]), metadata=dict(hit.metadata))
            for i, hit in enumerate(hits) if i in chosen]


def is_selection_of(text: str, chunk_text: str) -> bool:
    """True when ``text`` (a source's text) is ``chunk_text`` or made only of its pieces, as
    :func:`select_sentences` cuts them (whitespace ignored): for checks that a source is a stored chunk."""
    whole = " ".join(chunk_text.split())
    pieces = [" ".join(p.split()) for line in text.split("\n") for p in line.split(GAP.strip())]
    return bool(whole) and all(p in whole for p in pieces if p)
