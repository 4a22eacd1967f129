"""Recursive splitting that respects paragraphs and sentences, keeping page numbers.

The character splitter is LangChain's ``RecursiveCharacterTextSplitter``. We add what it lacks:
pages are joined into one text so chunks can run across page breaks, and each chunk gets the
page it starts on, that page's flags (``ocr``) and the heading path it starts under; chunks that would exceed the embedder's token limit are split again, so no
text is silently truncated at embedding time.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


def _splitter(chunk_size: int, chunk_overlap: int):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=min(chunk_overlap, chunk_size // 2),
                                          separators=SEPARATORS, keep_separator="end", add_start_index=True,
                                          strip_whitespace=True)


def split_text(text: str, chunk_size: int = 1000, chunk_overlap: int = 200) -> list[tuple[str, int]]:
    """Split one text; returns (chunk, start offset) pairs in order."""
    docs = _splitter(chunk_size, chunk_overlap).create_documents([text])
    return [(d.page_content, d.metadata["start_index"]) for d in docs if d.page_content.strip()]


def split_document(doc: Document, chunk_size: int = 1000, chunk_overlap: int = 200,
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
