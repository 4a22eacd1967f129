"""Bridge to any LangChain vector store: ``langchain://module.path:ClassName?param=value&...``.

Example: ``langchain://langchain_core.vectorstores:InMemoryVectorStore`` (tested), optionally with
``&persist_path=/tmp/idx.json`` to ``load`` on open and ``dump`` on close (stores that have
``load``/``dump``, like ``InMemoryVectorStore``). Other query parameters go to the class's
constructor (values parsed as JSON when they parse, e.g. ``?collection_name=docs&k=4``).

How vectors get in: ragtune embeds; the LangChain store is built with a ``PrecomputedEmbeddings``
adapter whose ``embed_documents`` / ``embed_query`` return the vectors ragtune hands over for
that call (it never embeds anything itself). Stores with ``add_embeddings`` (FAISS) get the
vectors directly.

What works, per capability of the wrapped class:
- upsert: ``add_texts(..., ids=...)`` after ``delete(ids)`` so stores without real upsert do
  not duplicate; search: ``similarity_search_with_score_by_vector`` when present, else
  ``similarity_search_with_score`` with the query vector injected through the adapter.
- filters: a Python callable for stores that take one (InMemoryVectorStore, FAISS); otherwise
  the bridge over-fetches and filters client side (``?filter_mode=post``). Collections are a
  ``collection`` metadata key in the same filter: in callable mode the store ranks only allowed
  documents (k results whenever k exist); in post mode nothing from another collection is ever
  returned, but a small collection can come back with fewer than k.
- scores: what the store returns; cosine similarity for InMemoryVectorStore.
- count / sources / delete_source / iter_chunks / info: exact for stores that keep a ``store``
  dict (InMemoryVectorStore: info is a reserved entry in it, so ``dump`` keeps it); for other
  stores the bridge tracks the ids written through it in this process only, and ``iter_chunks``
  is unavailable (LangChain has no generic "list everything" API).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from rag.errors import ConfigError, MissingDependencyError, StoreError, redact
from rag.stores import to_vectors
from rag.types import DEFAULT_COLLECTION, Chunk, Filter, Hit

_INFO_ID = "__ragtune_info__"
_CALLABLE_FILTER = {"InMemoryVectorStore", "FAISS"}

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
except ModuleNotFoundError as e:  # pragma: no cover - the registry reports the extra
    raise MissingDependencyError("store 'langchain://'", "langchain", e.name) from e


class PrecomputedEmbeddings(Embeddings):
    """An ``Embeddings`` that returns vectors handed to it, keyed by text; it never computes any."""

    def __init__(self) -> None:
        self.pending: dict[str, list[float]] = {}
        self.query: list[float] | None = None

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        try:
            return [self.pending[t] for t in texts]
        except KeyError:
            raise StoreError("the LangChain bridge cannot embed new text itself: write through ragtune "
                             "(python -m ingest / RAG.add_texts), which hands over the vectors") from None

    def embed_query(self, text: str) -> list[float]:
        if self.query is None:
            raise StoreError("the LangChain bridge has no query vector: search through ragtune")
        return self.query


def parse_uri(uri: str) -> dict[str, Any]:
    if not uri.lower().startswith("langchain://"):
        raise ConfigError(f"not a langchain URI: '{redact(uri)}'")
    target, _, query = uri[len("langchain://"):].partition("?")
    module, _, cls = target.partition(":")
    if not module or not cls:
        raise ConfigError(f"'{redact(uri)}': expected langchain://module.path:ClassName "
                          "(e.g. langchain://langchain_core.vectorstores:InMemoryVectorStore)")
    params: dict[str, Any] = {}
    for k, v in parse_qs(query).items():
        try:
            params[k] = json.loads(v[-1])
        except json.JSONDecodeError:
            params[k] = v[-1]
    return {"module": module, "cls": cls, "persist_path": params.pop("persist_path", None),
            "filter_mode": params.pop("filter_mode", None), "params": params}


def _meta(c: Chunk) -> dict[str, Any]:
    return {"chunk_id": c.id, "source": c.source, "page": int(c.page), "chunk_index": int(c.chunk_index),
            "file_hash": c.file_hash or "", "metadata_json": json.dumps(c.metadata or {}, ensure_ascii=False),
            "collection": c.collection}


def _chunk(text: str, md: dict[str, Any]) -> Chunk:
    return Chunk(md["chunk_id"], text, md["source"], int(md.get("page", 0)), int(md.get("chunk_index", 0)),
                 md.get("file_hash", ""), json.loads(md.get("metadata_json") or "{}"),
                 md.get("collection", DEFAULT_COLLECTION))


class LangChainStore:
    """Adapts a LangChain ``VectorStore`` instance to ragtune's ``VectorStore`` contract."""

    def __init__(self, uri: str, *, vectorstore: Any = None, **_: Any):
        cfg = parse_uri(uri)
        self.uri = redact(uri)
        self.embeddings = PrecomputedEmbeddings()
        self.persist_path = cfg["persist_path"]
        self._tracked: dict[str, tuple[str, int, str]] = {}  # id -> (source, page, collection), generic stores
        self._info: dict[str, Any] | None = None
        if vectorstore is None:
            vectorstore = self._build(cfg)
        self.vs = vectorstore
        cls_name = type(vectorstore).__name__
        self.filter_mode = cfg["filter_mode"] or ("callable" if cls_name in _CALLABLE_FILTER else "post")

    def _build(self, cfg: dict[str, Any]) -> Any:
        try:
            cls = getattr(importlib.import_module(cfg["module"]), cfg["cls"])
        except ModuleNotFoundError as e:
            raise ConfigError(f"cannot import '{cfg['module']}' for {self.uri}: {e}. Next: pip install the "
                              "package that provides it") from e
        except AttributeError as e:
            raise ConfigError(f"'{cfg['module']}' has no class '{cfg['cls']}' ({self.uri})") from e
        if self.persist_path and os.path.exists(self.persist_path) and hasattr(cls, "load"):
            try:
                return cls.load(self.persist_path, self.embeddings, **cfg["params"])
            except Exception as e:
                raise StoreError(f"{self.uri}: cannot load {self.persist_path}: {e}") from e
        errors = []
        for key in ("embedding", "embeddings", "embedding_function"):
            try:
                return cls(**{key: self.embeddings}, **cfg["params"])
            except TypeError as e:
                errors.append(str(e))
        raise StoreError(f"cannot construct {cfg['cls']} for {self.uri}: {errors[-1]}. Next: pass its required "
                         "constructor arguments as query parameters")

    @property
    def _dict(self) -> dict[str, Any] | None:
        """The backing dict of InMemoryVectorStore-like stores (id -> {id, vector, text, metadata})."""
        d = getattr(self.vs, "store", None)
        return d if isinstance(d, dict) else None

    # -- info -----------------------------------------------------------------------------------
    def get_info(self) -> dict[str, Any] | None:
        d = self._dict
        if d is not None and _INFO_ID in d:
            return json.loads(d[_INFO_ID]["text"])
        return self._info

    def set_info(self, info: dict[str, Any]) -> None:
        d = self._dict
        if d is not None:  # a reserved entry: dump/load carry it; searches and counts skip it
            d[_INFO_ID] = {"id": _INFO_ID, "vector": [0.0], "text": json.dumps(info), "metadata": {_INFO_ID: True}}
        else:
            self._info = dict(info)

    # -- writes ---------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if not chunks:
            return
        vecs = to_vectors(vectors, len(chunks))
        latest = {c.id: i for i, c in enumerate(chunks)}
        order = sorted(latest.values())
        ids = [chunks[i].id for i in order]
        texts = [chunks[i].text for i in order]
        metas = [_meta(chunks[i]) for i in order]
        vec_list = [vecs[i].tolist() for i in order]
        if self._dict is None:
            try:
                self.vs.delete(ids=ids)  # stores without real upsert would duplicate otherwise
            except (NotImplementedError, ValueError, KeyError):
                pass
        try:
            if hasattr(self.vs, "add_embeddings"):
                self.vs.add_embeddings(list(zip(texts, vec_list)), metadatas=metas, ids=ids)
            else:
                self.embeddings.pending = dict(zip(texts, vec_list))
                self.vs.add_texts(texts, metadatas=metas, ids=ids)
        finally:
            self.embeddings.pending = {}
        if self._dict is None:
            self._tracked.update({i: (m["source"], m["page"], m["collection"]) for i, m in zip(ids, metas)})

    def _entries(self) -> Iterator[dict[str, Any]]:
        for k, v in list((self._dict or {}).items()):
            if k != _INFO_ID:
                yield v

    def delete_source(self, source: str, collection: str = DEFAULT_COLLECTION) -> int:
        if self._dict is not None:
            ids = [e["id"] for e in self._entries() if e["metadata"].get("source") == source
                   and e["metadata"].get("collection", DEFAULT_COLLECTION) == collection]
        else:
            ids = [i for i, (s, _, c) in self._tracked.items() if s == source and c == collection]
        if ids:
            self.vs.delete(ids=ids)
            for i in ids:
                self._tracked.pop(i, None)
        return len(ids)

    # -- reads ----------------------------------------------------------------------------------
    def count(self) -> int:
        return sum(1 for _ in self._entries()) if self._dict is not None else len(self._tracked)

    def _keys(self) -> Iterator[tuple[str, str]]:
        """(source, collection) of every chunk."""
        if self._dict is not None:
            return ((e["metadata"]["source"], e["metadata"].get("collection", DEFAULT_COLLECTION))
                    for e in self._entries())
        return ((s, c) for s, _, c in self._tracked.values())

    def sources(self, collections: list[str] | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for s, c in self._keys():
            if collections is None or c in collections:
                out[s] = out.get(s, 0) + 1
        return out

    def collections(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, c in self._keys():
            out[c] = out.get(c, 0) + 1
        return out

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        if self._dict is None:
            raise StoreError(f"{self.uri}: iter_chunks needs a store that exposes its vectors "
                             "(InMemoryVectorStore does); copy from the original source instead")
        entries = list(self._entries())
        for i in range(0, len(entries), batch_size):
            part = entries[i:i + batch_size]
            yield ([_chunk(e["text"], e["metadata"]) for e in part],
                   np.asarray([e["vector"] for e in part], dtype=np.float32))

    def search(self, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        if k <= 0:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        f = filter if filter is not None and not filter.is_empty() else None

        def keep(doc: Document) -> bool:
            md = doc.metadata or {}
            return "chunk_id" in md and (f is None or f.matches(md.get("source", ""), int(md.get("page", 0)),
                                                                md.get("collection", DEFAULT_COLLECTION)))

        if self.filter_mode == "callable":
            pairs = self._query(q, k, filter=keep)
        else:
            fetch = k if f is None else max(4 * k, 50)
            pairs = [(d, s) for d, s in self._query(q, fetch + 1) if keep(d)]
        return [Hit.from_chunk(_chunk(d.page_content, d.metadata), float(s)) for d, s in pairs[:k]]

    def _query(self, q: list[float], k: int, **kw: Any) -> list[tuple[Document, float]]:
        if hasattr(self.vs, "similarity_search_with_score_by_vector"):
            return self.vs.similarity_search_with_score_by_vector(q, k=k, **kw)
        self.embeddings.query = q
        try:
            return self.vs.similarity_search_with_score("", k=k, **kw)
        finally:
            self.embeddings.query = None

    def close(self) -> None:
        if self.persist_path and hasattr(self.vs, "dump"):
            self.vs.dump(self.persist_path)

    def __repr__(self) -> str:
        return f"LangChainStore({self.uri!r})"
