"""The small value types that flow through ragtune."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Page:
    """Text of one page of a source document (page numbers are 1-based; 0 = no pages)."""

    number: int
    text: str
    ocr: bool = False


@dataclass(slots=True)
class Document:
    """A parsed file: its pages plus file-level metadata."""

    source: str
    pages: list[Page]
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def text_chars(self) -> int:
        return sum(len(p.text.strip()) for p in self.pages)


@dataclass(slots=True)
class Chunk:
    """A piece of a document, the unit that is embedded, stored and retrieved."""

    id: str
    text: str
    source: str
    page: int = 0
    chunk_index: int = 0
    file_hash: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Filter:
    """Metadata filter understood by every store: a source (or several) and a page range."""

    source: str | list[str] | None = None
    page_min: int | None = None
    page_max: int | None = None

    @property
    def sources(self) -> list[str] | None:
        if self.source is None:
            return None
        return [self.source] if isinstance(self.source, str) else list(self.source)

    def is_empty(self) -> bool:
        return self.source is None and self.page_min is None and self.page_max is None

    def matches(self, source: str, page: int) -> bool:
        srcs = self.sources
        if srcs is not None and source not in srcs:
            return False
        if self.page_min is not None and page < self.page_min:
            return False
        if self.page_max is not None and page > self.page_max:
            return False
        return True


@dataclass(slots=True)
class Hit:
    """A retrieved chunk with its score (higher is better)."""

    id: str
    text: str
    source: str
    page: int
    score: float
    chunk_index: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_chunk(cls, chunk: Chunk, score: float) -> "Hit":
        return cls(chunk.id, chunk.text, chunk.source, chunk.page, float(score), chunk.chunk_index,
                   dict(chunk.metadata))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "page": self.page, "score": round(self.score, 6),
                "text": self.text, "chunk_index": self.chunk_index, "metadata": self.metadata}
