"""Chunking: recursive splitting that respects paragraphs and sentences, keeping page numbers,
and the stable chunk ids. It lives in ``rag`` beside ``Chunk``: ingest and ``RAG.add_texts`` both
chunk, and ``rag`` never imports ``ingest``.

The character splitter is LangChain's ``RecursiveCharacterTextSplitter``. We add what it lacks:
pages are joined into one text so chunks can run across page breaks, and each chunk gets the
page it starts on, that page's flags (``ocr``) and the heading path it starts under; chunks that would exceed the embedder's token limit are split again, so no
text is silently truncated at embedding time.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rag.settings import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE
from rag.types import Document

PAGE_JOIN = "\n\n"
CHUNKER_VERSION = 2   # bump when the same file would give other chunk texts (ingest re-chunks it)
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


@dataclass(slots=True)
class TextPiece:
    text: str   # the context line (if any), a newline, then the body
    page: int
    start: int  # character offset of the body in the joined document text
    meta: dict[str, Any] = field(default_factory=dict)  # carried into the chunk's metadata
    context: str = ""  # the context line at the head of ``text`` ("" = none)

    @property
    def body(self) -> str:
        return self.text[len(self.context) + 1:] if self.context else self.text


SECTIONS_KEY = "sections"
"""``Document.metadata[SECTIONS_KEY]``: ``[(page_number, offset_in_page, "H1 > H2"), ...]`` in
reading order, set by loaders that know headings (Markdown, HTML, Word). Each chunk gets the
path of the last heading at or before its start as ``metadata["section"]``."""


CONTEXT_KEY = "context"
"""``Document.metadata[CONTEXT_KEY]``: ``{"title": ..., "identity": ...}`` from loaders that know
them (PDF: metadata title, cover page, running headers/footers). With the heading path and, for a
chunk that starts inside a table, that table's title and columns, they make the chunk's context
line: ``[Amazon.com, Inc. (AMZN) | Form 10-Q | quarter ended September 30, 2023 (Q3 2023) | Item 2.
... > Results of Operations]``. It heads the chunk's text, so the embedder and BM25 both see it and
the LLM knows whose figures a passage holds; it is also kept in ``metadata["context"]``."""

CONTEXT_PARTS = ("title", "identity", "section", "table")
MAX_CONTEXT = 300   # characters: the line must leave most of the embedder's window to the body


def context_line(doc_context: dict[str, str], section: str, table: str, parts=CONTEXT_PARTS) -> str:
    """The bracketed line, or "" when no part has anything to say."""
    values = [doc_context.get("title", "") if "title" in parts else "",
              doc_context.get("identity", "") if "identity" in parts else "",
              section if "section" in parts else "", table if "table" in parts else ""]
    seen: list[str] = []
    for v in values:
        v = " ".join(v.split())
        # The title often repeats part of the identity (or the other way round): say it once.
        if v and not any(v.lower() in x.lower() for x in seen):
            seen = [x for x in seen if x.lower() not in v.lower()] + [v]
    line = " | ".join(seen)
    return f"[{line[:MAX_CONTEXT]}]" if line else ""


_TABLE_HEAD = re.compile(r"^(Table \d+(?: \(page \d+\))?(?:: [^\n]*)?)\n(\|[^\n]*\|)?", re.MULTILINE)


def chunk_id(source: str, index: int, text: str) -> str:
    """A chunk's id: stable across runs and stores for the same source, position and text."""
    return hashlib.sha256(f"{source}\x00{index}\x00{text}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _splitter(chunk_size: int, chunk_overlap: int):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=min(chunk_overlap, chunk_size // 2),
                                          separators=SEPARATORS, keep_separator="end",
                                          strip_whitespace=True)


def split_text(text: str, chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_overlap: int = DEFAULT_CHUNK_OVERLAP) -> list[tuple[str, int]]:
    """Split one text; returns (chunk, start offset) pairs in order."""
    overlap = min(chunk_overlap, chunk_size // 2)
    chunks = [c for c in _splitter(chunk_size, chunk_overlap).split_text(text) if c.strip()]
    return list(zip(chunks, _offsets(text, chunks, overlap)))


def _offsets(text: str, chunks: list[str], overlap: int) -> list[int]:
    """Where each chunk sits in ``text``.

    LangChain's ``add_start_index`` searches from a guessed offset and can land inside an earlier
    repeat of a chunk in repetitive text. A chunk re-uses at most ``overlap`` characters of the
    previous one and always reaches past its end, so search forward from there; if that alignment
    still leaves text uncovered (only in highly repetitive text), backtrack over the occurrences.
    """
    starts, prev_start, prev_end = [], -1, 0
    for chunk in chunks:
        # ...and always reaches past the previous chunk's end (it adds at least one new split).
        start = text.find(chunk, max(prev_start + 1, prev_end - overlap, prev_end - len(chunk) + 1))
        if start < 0:
            start = max(0, text.find(chunk, prev_start + 1))
        starts.append(start)
        prev_start, prev_end = start, start + len(chunk)
    if _covers(text, chunks, starts):
        return starts
    exact = _search(text, chunks, overlap)
    return exact if exact is not None else starts


def _search(text: str, chunks: list[str], overlap: int, budget: int = 20_000) -> list[int] | None:
    """Backtracking alignment for repetitive text: in order, no uncovered text between chunks."""
    out: list[int] = []
    steps = 0

    def place(i: int, pos: int, prev_start: int) -> bool:
        nonlocal steps
        if i == len(chunks):
            return not text[pos:].strip()
        lo = max(prev_start + 1, pos - overlap) if i else 0
        start = text.find(chunks[i], lo)
        while start >= 0 and not text[pos:start].strip():
            steps += 1
            if steps > budget:
                return False
            out.append(start)
            if place(i + 1, max(pos, start + len(chunks[i])), start):
                return True
            out.pop()
            start = text.find(chunks[i], start + 1)
        return False

    return out if place(0, 0, -1) else None


def _covers(text: str, chunks: list[str], starts: list[int]) -> bool:
    pos = 0
    for chunk, start in zip(chunks, starts):
        if text[pos:start].strip():
            return False
        pos = max(pos, start + len(chunk))
    return not text[pos:].strip()


def split_document(doc: Document, chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
                   *, max_tokens: int | None = None,
                   count_tokens: Callable[[list[str]], list[int]] | None = None,
                   context: tuple[str, ...] = CONTEXT_PARTS) -> list[TextPiece]:
    """Split a parsed document into pieces that know their page, each headed by its context line.

    Args:
        max_tokens: the embedder's input limit; pieces (context line included) over it are split again.
        count_tokens: the embedder's tokenizer, batched.
        context: which parts of the context line to write (``CONTEXT_PARTS``; () for none).
    """
    starts, parts, pos = [], [], 0
    for page in doc.pages:
        starts.append(pos)
        parts.append(page.text)
        pos += len(page.text) + len(PAGE_JOIN)
    joined = PAGE_JOIN.join(parts)
    numbers = [p.number for p in doc.pages]
    ocr_flags = [p.ocr for p in doc.pages]
    sections = _section_offsets(doc, starts)
    section_starts = [s for s, _ in sections]

    # Only loaders that say what a document is (CONTEXT_KEY) get context lines; others keep plain text.
    doc_context = doc.metadata.get(CONTEXT_KEY)
    context = context if doc_context is not None else ()
    doc_context = doc_context or {}
    tables = [(m.start(), m.group(1), m.group(2) or "") for m in _TABLE_HEAD.finditer(joined)] if context else []
    table_starts = [t[0] for t in tables]

    def page_index(offset: int) -> int:
        return max(0, bisect.bisect_right(starts, offset) - 1)

    def table_of(text: str, at: int) -> str:
        """A chunk starting inside a table block (not at its title) gets the title and columns."""
        j = bisect.bisect_right(table_starts, at) - 1
        if j < 0 or text.startswith("Table ") or "\n\n" in joined[tables[j][0]:at]:
            return ""
        return f"{tables[j][1]} {tables[j][2]}".strip()

    def piece(text: str, offset: int) -> TextPiece:
        meta: dict[str, Any] = {}
        if numbers:
            i = page_index(offset)
            if ocr_flags[i]:
                meta["ocr"] = True
        # A chunk that opens with a heading belongs to it; use the first non-blank character.
        at = offset + len(text) - len(text.lstrip())
        if sections:
            j = bisect.bisect_right(section_starts, at) - 1
            if j >= 0 and sections[j][1]:
                meta["section"] = sections[j][1]
        line = context_line(doc_context, meta.get("section", ""), table_of(text.lstrip(), at), context) \
            if context else ""
        if line:
            meta["context"] = line
        return TextPiece(f"{line}\n{text}" if line else text, numbers[page_index(offset)] if numbers else 0,
                         offset, meta, line)

    # The context line comes on top of the body: leave room for its document part so a chunk stays
    # near chunk_size (the section part varies; the token check below catches what goes over).
    reserve = min(chunk_size // 3, len(context_line(doc_context, "", "", context))) if context else 0
    pieces = [piece(t, s) for t, s in split_text(joined, chunk_size - reserve, chunk_overlap)]
    if max_tokens and count_tokens and pieces:
        pieces = _fit_tokens(pieces, max_tokens, count_tokens, chunk_overlap, piece)
    return pieces


def _section_offsets(doc: Document, starts: list[int]) -> list[tuple[int, str]]:
    by_number = {p.number: i for i, p in enumerate(doc.pages)}
    out = []
    for number, offset, path in doc.metadata.get(SECTIONS_KEY) or []:
        i = by_number.get(number)
        if i is not None:
            out.append((starts[i] + offset, path))
    return sorted(out, key=lambda x: x[0])


def _fit_tokens(pieces: list[TextPiece], max_tokens: int, count_tokens, chunk_overlap: int,
                make: Callable[[str, int], TextPiece]) -> list[TextPiece]:
    out: list[TextPiece] = []
    counts = count_tokens([p.text for p in pieces])
    for piece, n in zip(pieces, counts):
        if n <= max_tokens:
            out.append(piece)
            continue
        # Scale the character budget by how far over the limit the piece is, with a margin.
        # Only the body is split again; each part gets the context line back from ``make``.
        size = max(50, int(len(piece.text) * max_tokens / n * 0.85) - len(piece.context))
        sub = [make(t, piece.start + s) for t, s in split_text(piece.body, size, min(chunk_overlap, size // 5))]
        out.extend(_fit_tokens(sub, max_tokens, count_tokens, chunk_overlap, make) if size > 50 else sub)
    return out
