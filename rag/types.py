"""The small value types that flow through ragtune."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from rag.errors import ConfigError

# The retrieval methods, in one place: settings, CLIs, the server and the UI take them from here.
RetrievalMode = Literal["dense", "bm25", "hybrid", "mmr"]
MODES: tuple[str, ...] = get_args(RetrievalMode)

# Collections: named sets of documents inside one store. Chunks without one (indexes built before
# collections existed) belong to DEFAULT_COLLECTION. Names are plain words because every backend
# puts them somewhere narrow: a Pinecone metadata value, a Weaviate property, a Milvus partition key.
DEFAULT_COLLECTION = "default"
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_collection(name: Any) -> str:
    """A valid collection name, or ConfigError saying what is accepted (letters, digits, _ and -)."""
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name):
        raise ConfigError(f"collection: {name!r} is not a collection name (1-64 letters, digits, _ or -, "
                         "starting with a letter or digit)")
    return name


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
    collection: str = DEFAULT_COLLECTION


@dataclass(slots=True)
class Filter:
    """Metadata filter understood by every store: a source (or several), a page range and the
    collections to search (None = all; [] = none). Stores apply it inside the search."""

    source: str | list[str] | None = None
    page_min: int | None = None
    page_max: int | None = None
    collections: list[str] | None = None

    def __post_init__(self) -> None:
        # A bare string would make `in` a substring test ("h" in "hr"): always a list of valid names.
        if self.collections is not None:
            names = [self.collections] if isinstance(self.collections, str) else list(self.collections)
            self.collections = [check_collection(c) for c in dict.fromkeys(names)]

    @property
    def sources(self) -> list[str] | None:
        if self.source is None:
            return None
        return [self.source] if isinstance(self.source, str) else list(self.source)

    def is_empty(self) -> bool:
        return self.source is None and self.page_min is None and self.page_max is None and self.collections is None

    def matches(self, source: str, page: int, collection: str = DEFAULT_COLLECTION) -> bool:
        if self.collections is not None and collection not in self.collections:
            return False
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
    collection: str = DEFAULT_COLLECTION

    @classmethod
    def from_chunk(cls, chunk: Chunk, score: float) -> "Hit":
        return cls(chunk.id, chunk.text, chunk.source, chunk.page, float(score), chunk.chunk_index,
                   dict(chunk.metadata), chunk.collection)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "page": self.page, "score": round(self.score, 6),
                "text": self.text, "chunk_index": self.chunk_index, "metadata": self.metadata,
                "collection": self.collection}


@dataclass(slots=True)
class Source:
    """A passage handed to the LLM, numbered as in the prompt."""

    n: int
    source: str
    page: int
    score: float
    text: str
    cited: bool = False
    id: str = ""
    implicit: bool = False  # the top passage attached because the model cited nothing
    metadata: dict[str, Any] = field(default_factory=dict)
    collection: str = DEFAULT_COLLECTION

    @classmethod
    def from_hit(cls, n: int, hit: Hit) -> "Source":
        return cls(n=n, source=hit.source, page=hit.page, score=float(hit.score), text=hit.text, id=hit.id,
                   metadata=dict(hit.metadata), collection=hit.collection)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["score"] = round(self.score, 6)
        return d


@dataclass(slots=True)
class Answer:
    """What :func:`answer` returns: the text, its sources and what citation checking found."""

    text: str
    sources: list[Source]
    citations: list[int] = field(default_factory=list)          # valid passage numbers cited, in order
    invalid_citations: list[int] = field(default_factory=list)  # numbers with no passage behind them
    unsupported: list[dict[str, Any]] = field(default_factory=list)  # {"sentence", "citations"}
    flags: list[str] = field(default_factory=list)  # no_citations, declined, invalid_citations, ...
    question: str = ""
    standalone_question: str = ""
    timings: dict[str, float] = field(default_factory=dict)     # seconds per step
    tokens: dict[str, int] = field(default_factory=dict)        # prompt, completion, context_window
    dropped: int = 0  # retrieved passages that did not fit the context window
    finish_reason: str = "stop"  # "length": max_new_tokens cut the answer (OpenAI's names)

    @property
    def cited_sources(self) -> list[Source]:
        return [s for s in self.sources if s.cited]

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "sources": [{"n": s.n, "source": s.source, "page": s.page, "score": round(s.score, 6),
                         "text": s.text, "cited": s.cited, "implicit": s.implicit, "id": s.id,
                         "collection": s.collection}
                        for s in self.sources],
            "citations": list(self.citations),
            "invalid_citations": list(self.invalid_citations),
            "unsupported": list(self.unsupported),
            "flags": list(self.flags),
            "question": self.question,
            "standalone_question": self.standalone_question,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "tokens": dict(self.tokens),
            "dropped": self.dropped,
            "finish_reason": self.finish_reason,
        }
