"""Qdrant store: ``qdrant://./path`` (local mode, a folder), ``qdrant://:memory:``, ``qdrant://host:6333`` (server).

Why this shape:
- Qdrant point ids must be unsigned ints or UUIDs: the point id is ``uuid5(chunk id)``, so
  re-upserting a chunk replaces it; the chunk id itself stays in the payload.
- The build info is the collection's own ``metadata`` (Qdrant >= 1.16), so it lives and dies
  with the collection. Info set before the first upsert with a ``dim`` creates the collection.
- Local mode persists each point separately (one fsync per point: ~5 ms): fine for a few
  thousand chunks, use a server beyond that. One client per local folder at a time.
- Server: ``QDRANT_API_KEY`` from the environment, ``?https=true``, every call has a timeout.
- Collections (ragtune's) are a ``collection`` payload field with a keyword payload index marked
  ``is_tenant`` on servers (Qdrant then keeps each tenant's points together and plans filtered
  HNSW per tenant); the filter runs inside ``query_points``, never after it. Points written
  before collections get ``collection = "default"`` on open (one ``set_payload`` over the points
  where it is empty), recorded in the collection metadata so it runs once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from qdrant_client import QdrantClient, models

from rag.errors import ConfigError, IndexMismatchError, StoreError, redact
from rag.stores import call_store, to_vectors
from rag.types import DEFAULT_COLLECTION, Chunk, Filter, Hit

_NS = uuid.UUID("6f1c1e0a-3c55-5b7e-9a51-7261677475e1")  # fixed: point ids must be stable forever
_INFO_KEY = "ragtune_info"
_SCHEMA_KEY = "ragtune_schema"  # 2 = points carry a collection


def point_id(chunk_id: str) -> str:
    """The Qdrant point id of a chunk: a UUID5 of its id."""
    return str(uuid.uuid5(_NS, chunk_id))


def filter_to_qdrant(f: Filter | None) -> models.Filter | None:
    """Translate a Filter into a qdrant ``models.Filter`` (None = no filter)."""
    if f is None or f.is_empty():
        return None
    must: list[models.Condition] = []
    if f.collections is not None:
        must.append(models.FieldCondition(key="collection", match=models.MatchAny(any=list(f.collections))))
    srcs = f.sources
    if srcs is not None:
        match = models.MatchValue(value=srcs[0]) if len(srcs) == 1 else models.MatchAny(any=list(srcs))
        must.append(models.FieldCondition(key="source", match=match))
    if f.page_min is not None or f.page_max is not None:
        must.append(models.FieldCondition(key="page", range=models.Range(
            gte=None if f.page_min is None else int(f.page_min),
            lte=None if f.page_max is None else int(f.page_max))))
    return models.Filter(must=must)


def parse_uri(uri: str) -> dict[str, Any]:
    if not uri.lower().startswith("qdrant://"):
        raise ConfigError(f"not a qdrant URI: '{redact(uri)}' (expected qdrant://./path or qdrant://host:6333)")
    rest, _, query = uri[len("qdrant://"):].partition("?")
    q = {k: v[-1] for k, v in parse_qs(query).items()}
    opts = {"collection": q.pop("collection", "chunks"), "timeout": int(q.pop("timeout", 5)),
            "https": q.pop("https", "false").lower() in ("1", "true", "yes")}
    if q:
        raise ConfigError(f"unknown parameter(s) {sorted(q)} in '{redact(uri)}' (known: collection, timeout, https)")
    if rest == ":memory:":
        return {**opts, "mode": "memory", "display": "qdrant://:memory:"}
    if rest.startswith((".", "/", "~")) or not rest:
        return {**opts, "mode": "local", "path": str(Path(rest or "./qdrant").expanduser()),
                "display": f"qdrant://{rest}"}
    if "@" in rest:
        raise ConfigError(f"put the Qdrant API key in QDRANT_API_KEY, not in the URI '{redact(uri)}'")
    host, _, port = rest.rstrip("/").partition(":")
    return {**opts, "mode": "server", "host": host, "port": int(port or 6333),
            "display": f"qdrant://{host}:{int(port or 6333)}"}


class QdrantStore:
    """Chunks as points in one Qdrant collection (cosine distance)."""

    def __init__(self, uri: str, **_: Any):
        cfg = parse_uri(uri)
        self.uri = cfg["display"]
        self.collection = cfg["collection"]
        self.timeout = cfg["timeout"]
        self._pending_info: dict[str, Any] | None = None
        try:
            if cfg["mode"] == "memory":
                self.client = QdrantClient(location=":memory:")
            elif cfg["mode"] == "local":
                Path(cfg["path"]).mkdir(parents=True, exist_ok=True)
                self.client = QdrantClient(path=cfg["path"])
            else:
                self.client = QdrantClient(host=cfg["host"], port=cfg["port"], https=cfg["https"],
                                           api_key=os.environ.get("QDRANT_API_KEY") or None,
                                           timeout=self.timeout, check_compatibility=False)
            exists = self.client.collection_exists(self.collection)
        except Exception as e:
            hint = ("check that the server is running and reachable, and QDRANT_API_KEY"
                    if cfg["mode"] == "server" else
                    "check that the folder is writable and no other process has it open (one client per folder)")
            raise StoreError(f"cannot open Qdrant at {self.uri}: {redact(str(e)) or type(e).__name__}. "
                             f"Next: {hint}") from e
        self._dim = self._existing_dim() if exists else None
        if self._dim is not None:
            self._migrate()

    def _call(self, what: str, fn, *args, **kw):
        return call_store(self.uri, what, fn, *args, **kw)

    def _existing_dim(self) -> int | None:
        vp = self.client.get_collection(self.collection).config.params.vectors
        return int(vp.size) if isinstance(vp, models.VectorParams) else None

    def _migrate(self) -> None:
        """Schema 1 -> 2: points without a collection become 'default' (once; idempotent if cut short)."""
        meta = self._call("get info", self.client.get_collection, self.collection).config.metadata or {}
        if meta.get(_SCHEMA_KEY, 1) >= 2:
            return
        empty = models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="collection"))])
        self._call("migrate", self.client.set_payload, self.collection, {"collection": DEFAULT_COLLECTION},
                   points=models.FilterSelector(filter=empty), wait=True)
        self._index_payload()
        self._call("migrate", self.client.update_collection, self.collection, metadata={_SCHEMA_KEY: 2},
                   timeout=self.timeout)

    def _index_payload(self) -> None:
        # local mode has no payload indexes (it warns and ignores them); servers use them for filters
        if isinstance(self.client._client, _local_types()):
            return
        for field, schema in (("source", models.PayloadSchemaType.KEYWORD),
                              ("page", models.PayloadSchemaType.INTEGER),
                              ("collection", models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD,
                                                                       is_tenant=True))):
            self._call("index payload", self.client.create_payload_index, self.collection, field, schema,
                       wait=True)

    def _ensure_collection(self, dim: int) -> None:
        if self._dim is not None:
            if self._dim != dim:
                raise IndexMismatchError(f"{self.uri} collection '{self.collection}' holds {self._dim}-d vectors, "
                                         f"got {dim}-d: use the same embedder or ?collection=OTHER")
            return
        meta: dict[str, Any] = {_SCHEMA_KEY: 2}
        if self._pending_info is not None:
            meta[_INFO_KEY] = self._pending_info
        self._call("create collection", self.client.create_collection, self.collection,
                   vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                   metadata=meta, timeout=self.timeout)
        self._index_payload()
        self._dim = dim
        self._pending_info = None

    # -- info -----------------------------------------------------------------------------------
    def get_info(self) -> dict[str, Any] | None:
        if self._dim is None:
            return self._pending_info
        meta = self._call("get info", self.client.get_collection, self.collection).config.metadata or {}
        return meta.get(_INFO_KEY)

    def set_info(self, info: dict[str, Any]) -> None:
        if self._dim is None:
            self._pending_info = dict(info)
            if info.get("dim"):
                self._ensure_collection(int(info["dim"]))
            return
        self._call("set info", self.client.update_collection, self.collection, metadata={_INFO_KEY: info},
                   timeout=self.timeout)

    # -- writes ---------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray, batch_size: int = 256) -> None:
        if not chunks:
            return
        vecs = to_vectors(vectors, len(chunks))
        self._ensure_collection(vecs.shape[1])
        latest = {c.id: i for i, c in enumerate(chunks)}
        points = [models.PointStruct(id=point_id(chunks[i].id), vector=vecs[i].tolist(), payload={
            "chunk_id": chunks[i].id, "text": chunks[i].text, "source": chunks[i].source,
            "page": int(chunks[i].page), "chunk_index": int(chunks[i].chunk_index),
            "file_hash": chunks[i].file_hash or "", "metadata": chunks[i].metadata or {},
            "collection": chunks[i].collection})
            for i in sorted(latest.values())]
        for i in range(0, len(points), batch_size):
            self._call("upsert", self.client.upsert, self.collection, points[i:i + batch_size], wait=True)

    def delete_source(self, source: str, collection: str = DEFAULT_COLLECTION) -> int:
        if self._dim is None:
            return 0
        flt = filter_to_qdrant(Filter(source=source, collections=[collection]))
        n = self._call("count", self.client.count, self.collection, count_filter=flt, exact=True).count
        if n:
            self._call("delete", self.client.delete, self.collection,
                       points_selector=models.FilterSelector(filter=flt), wait=True)
        return n

    # -- reads ----------------------------------------------------------------------------------
    def count(self) -> int:
        if self._dim is None:
            return 0
        return self._call("count", self.client.count, self.collection, exact=True).count

    def _scroll(self, batch_size: int, payload: Any, vectors: bool,
                flt: models.Filter | None = None) -> Iterator[list[models.Record]]:
        if self._dim is None:
            return
        offset = None
        while True:
            points, offset = self._call("scroll", self.client.scroll, self.collection, limit=batch_size,
                                        offset=offset, with_payload=payload, with_vectors=vectors,
                                        scroll_filter=flt)
            if points:
                yield points
            if offset is None:
                return

    def sources(self, collections: list[str] | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for batch in self._scroll(2000, ["source"], False, filter_to_qdrant(Filter(collections=collections))):
            for p in batch:
                s = p.payload["source"]
                out[s] = out.get(s, 0) + 1
        return out

    def collections(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for batch in self._scroll(2000, ["collection"], False):
            for p in batch:
                c = p.payload.get("collection", DEFAULT_COLLECTION)
                out[c] = out.get(c, 0) + 1
        return out

    @staticmethod
    def _chunk(p: dict[str, Any]) -> Chunk:
        return Chunk(p["chunk_id"], p["text"], p["source"], int(p["page"]), int(p["chunk_index"]),
                     p.get("file_hash", ""), dict(p.get("metadata") or {}), p.get("collection", DEFAULT_COLLECTION))

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        for batch in self._scroll(batch_size, True, True):
            yield [self._chunk(p.payload) for p in batch], np.asarray([p.vector for p in batch], dtype=np.float32)

    def search(self, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        if self._dim is None or k <= 0:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        res = self._call("search", self.client.query_points, self.collection, query=q, limit=int(k),
                         query_filter=filter_to_qdrant(filter), with_payload=True, timeout=self.timeout)
        return [Hit.from_chunk(self._chunk(p.payload), float(p.score)) for p in res.points]

    def drop(self) -> None:
        """Delete the collection and its info (tests, ``--reset``)."""
        if self.client.collection_exists(self.collection):
            self.client.delete_collection(self.collection)
        self._dim, self._pending_info = None, None

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"QdrantStore({self.uri!r})"


def _local_types() -> tuple[type, ...]:
    from qdrant_client.local.qdrant_local import QdrantLocal

    return (QdrantLocal,)
