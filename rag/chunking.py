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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rag.settings import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE
from rag.types import Document

PAGE_JOIN = "\n\n"
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


@dataclass(slots=True)
class TextPiece:
    text: str
    page: int
    start: int  # character offset in the joined document text
    meta: dict[str, Any] = field(default_factory=dict)  # carried into the chunk's metadata


SECTIONS_KEY = "sections"
"""``Document.metadata[SECTIONS_KEY]``: ``[(page_number, offset_in_page, "H1 > H2"), ...]`` in
reading order, set by loaders that know headings (Markdown, HTML, Word). Each chunk gets the
path of the last heading at or before its start as ``metadata["section"]``."""


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
                   count_tokens: Callable[[list[str]], list[int]] | None = None) -> list[TextPiece]:
    """Split a parsed document into pieces that know their page.

    Args:
        max_tokens: the embedder's input limit; pieces over it are split again.
        count_tokens: the embedder's tokenizer, batched.
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

    def page_index(offset: int) -> int:
        return max(0, bisect.bisect_right(starts, offset) - 1)

    def piece(text: str, offset: int) -> TextPiece:
        meta: dict[str, Any] = {}
        if numbers:
            i = page_index(offset)
            if ocr_flags[i]:
                meta["ocr"] = True
        if sections:
            # A chunk that opens with a heading belongs to it; use the first non-blank character.
            at = offset + len(text) - len(text.lstrip())
            j = bisect.bisect_right(section_starts, at) - 1
            if j >= 0 and sections[j][1]:
                meta["section"] = sections[j][1]
        return TextPiece(text, numbers[page_index(offset)] if numbers else 0, offset, meta)

    pieces = [piece(t, s) for t, s in split_text(joined, chunk_size, chunk_overlap)]
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
        size = max(50, int(len(piece.text) * max_tokens / n * 0.85))
        sub = [make(t, piece.start + s) for t, s in split_text(piece.text, size, min(chunk_overlap, size // 5))]
        out.extend(_fit_tokens(sub, max_tokens, count_tokens, chunk_overlap, make) if size > 50 else sub)
    return out
