"""Vector stores: one protocol, one registry keyed by URI scheme.

Adding a backend = one module here with a class satisfying ``VectorStore`` + one line in
``REGISTRY``. Modules are imported only when their scheme is used.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.errors import ConfigError, IndexMismatchError, MissingDependencyError, RagtuneError, StoreError, redact
from rag.types import DEFAULT_COLLECTION, Chunk, Filter, Hit

SCHEMA_VERSION = 1


@runtime_checkable
class VectorStore(Protocol):
    """What every backend provides. Vectors are L2-normalised; scores are cosine similarity."""

    uri: str  # for display: never contains a password

    def get_info(self) -> dict[str, Any] | None:
        """How the index was built (embedder, dim, chunker, schema), or None when empty/new."""

    def set_info(self, info: dict[str, Any]) -> None: ...

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert or replace chunks by id (re-upserting the same id never duplicates); each chunk
        lands in its ``chunk.collection``. Ids are unique across collections (``scoped_id``)."""

    def delete_source(self, source: str, collection: str = DEFAULT_COLLECTION) -> int:
        """Delete every chunk of one source in one collection; returns how many were deleted."""

    def search(self, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        """Top-k by cosine similarity, best first, honouring the filter (collections included)
        inside the search: k hits whenever k chunks match, however the others rank."""

    def count(self) -> int: ...

    def sources(self, collections: list[str] | None = None) -> dict[str, int]:
        """Chunk count per source, over the given collections (None = all)."""

    def collections(self) -> dict[str, int]:
        """Chunk count per collection (only collections that hold chunks)."""

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        """Every chunk with its vector, in batches (migration, BM25)."""

    def close(self) -> None: ...


REGISTRY: dict[str, tuple[str, str]] = {
    # scheme: ("module:Class", extra that provides its SDK)
    "file": ("rag.stores.embedded:EmbeddedStore", ""),
    "pgvector": ("rag.stores.pgvector:PgVectorStore", "pgvector"),
    "milvus": ("rag.stores.milvus:MilvusStore", "milvus"),
    "qdrant": ("rag.stores.qdrant:QdrantStore", "qdrant"),
    "pinecone": ("rag.stores.pinecone:PineconeStore", "pinecone"),
    "weaviate": ("rag.stores.weaviate:WeaviateStore", "weaviate"),
    "langchain": ("rag.stores.langchain:LangChainStore", "langchain"),
}

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def scheme_of(uri: str) -> str:
    m = _SCHEME.match(uri)
    return m.group(1).lower() if m else "file"


def local_path(uri: str) -> Path:
    """The folder of an embedded store URI (``PATH`` or ``file://PATH``)."""
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()


def require_index(uri: str) -> None:
    """For read-only commands: refuse, creating nothing, when an embedded index does not exist
    yet (server stores are checked when opened).

    Raises:
        StoreError: naming the path and the command that builds the index.
    """
    if scheme_of(uri) == "file" and not (local_path(uri) / "chunks.sqlite").exists():
        raise StoreError(f"no index at {local_path(uri)}: run python -m ingest PATH first "
                         "(or point --store / --data-dir at an existing index)")


def open_store(uri: str, **options: Any) -> VectorStore:
    """Open (or create) the store a URI names.

    Raises:
        ConfigError: unknown scheme (the message lists the known ones).
        MissingDependencyError: the backend's SDK is not installed.
        StoreError: the store cannot be reached.
    """
    scheme = scheme_of(uri)
    if scheme not in REGISTRY:
        raise ConfigError(f"unknown store scheme '{scheme}' in '{redact(uri)}' "
                          f"(known: {', '.join(sorted(REGISTRY))}, or a plain folder path)")
    target, extra = REGISTRY[scheme]
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and not e.name.startswith("rag"):
            raise MissingDependencyError(f"store '{scheme}://'", extra or scheme, e.name) from e
        raise
    return getattr(module, cls_name)(uri, **options)


def call_store(uri: str, what: str, fn, *args: Any, passthrough: tuple[type[BaseException], ...] = (),
               **kw: Any) -> Any:
    """Call a backend SDK: our own errors (and ``passthrough``) go through; anything else the SDK
    raises becomes one StoreError naming the store (no password) and the operation.

    Every server backend wraps its SDK calls with this, so their errors read the same.
    """
    try:
        return fn(*args, **kw)
    except RagtuneError:
        raise
    except passthrough:
        raise
    except Exception as e:  # noqa: BLE001 - SDKs raise many types; the message keeps theirs
        raise StoreError(f"{redact(uri)}: {what} failed: {redact(str(e)) or type(e).__name__}") from e


def check_info(store: VectorStore, expected: dict[str, Any]) -> None:
    """Refuse to mix embedders: an index built with another model or dimension gives wrong results.

    Raises:
        IndexMismatchError: naming both embedders and how to re-embed.
    """
    info = store.get_info()
    if not info:
        return
    for key in ("embedder", "dim"):
        if key in info and key in expected and info[key] != expected[key]:
            raise IndexMismatchError(
                f"the index at {store.uri} was built with embedder '{info.get('embedder')}' "
                f"(dim {info.get('dim')}), but the current embedder is '{expected.get('embedder')}' "
                f"(dim {expected.get('dim')}). Use the same embedder (--embedder / RAGTUNE_EMBEDDER), "
                "or re-embed into a new store: python -m ingest PATH --store NEW_URI "
                "(or delete the old index and ingest again)")
    if info.get("schema", SCHEMA_VERSION) > SCHEMA_VERSION:
        raise IndexMismatchError(f"the index at {store.uri} has schema {info['schema']}, newer than this "
                                 f"ragtune understands ({SCHEMA_VERSION}): upgrade ragtune")


def scoped_id(collection: str, chunk_id: str) -> str:
    """The stored id of a chunk in a collection.

    Stores key chunks by id alone, so the same file in two collections needs two ids: chunks of
    the default collection keep their id (indexes built before collections existed stay valid),
    others get a hash of (collection, id), which no write to another collection can reproduce.
    """
    if collection == DEFAULT_COLLECTION:
        return chunk_id
    return hashlib.sha256(f"{collection}\x00{chunk_id}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def to_vectors(vectors: np.ndarray | Sequence[Sequence[float]], n: int) -> np.ndarray:
    """Validate and normalise a vector batch to a C-contiguous float32 matrix."""
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"expected {n} vectors, got array of shape {arr.shape}")
    return arr
