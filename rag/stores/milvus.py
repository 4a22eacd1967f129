"""Milvus store: ``milvus://./file.db`` (Milvus Lite, a local folder) or ``milvus://host:19530`` (server).

Both go through the same pymilvus ``MilvusClient`` code path; only the client URI differs.

Why this shape:
- One collection per index (``?collection=chunks``), chunk id as the VARCHAR primary key so
  ``upsert`` replaces by id; source/page are scalar fields filtered with boolean expressions.
- The build info lives in a small side collection ``<collection>_meta`` (Milvus needs a vector
  field in every collection, so it holds a dummy 2-d vector).
- Searching unflushed data is slow (~300 ms on Lite): writes mark the collection dirty and the
  next search (or close) flushes and loads it once; reopen loads the collection.
- Consistency level ``Strong`` by default, so counts and searches see the latest writes;
  ``?consistency=Bounded`` trades that for speed on a cluster.
- Collections (ragtune's, not Milvus's) are a VARCHAR partition-key field: Milvus hashes each
  value to a partition and a ``collection in [...]`` filter prunes the search to those partitions
  before the ANN runs, so k rows come back whenever the collection holds k. Milvus cannot add a
  partition key to an existing collection (and Lite has no add-field at all), so a collection
  from before collections is migrated on open by copying it into the new schema (rows become
  ``default``, vectors copied, nothing re-embedded), dropping the old one and renaming; a copy
  interrupted half-way is redone on the next open.

Server credentials: ``MILVUS_TOKEN`` (``user:password`` or an API key), never in the URI display.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from rag.errors import ConfigError, IndexMismatchError, StoreError, redact
from rag.stores import call_store, to_vectors
from rag.types import DEFAULT_COLLECTION, Chunk, Filter, Hit

_FIELDS = ["id", "text", "source", "page", "chunk_index", "file_hash", "metadata", "collection"]
_MAX_TEXT = 65535

# Milvus Lite has no MVCC timestamp for iterators; pymilvus warns on every iteration. Harmless.
logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(
    lambda r: "failed to get mvccTs" not in r.getMessage())


def _lit(s: str) -> str:
    """A Milvus string literal (double-quoted, JSON escaping is what the parser accepts)."""
    return json.dumps(str(s), ensure_ascii=False)


def filter_to_expr(f: Filter | None) -> str:
    """Translate a Filter into a Milvus boolean expression ("" = no filter)."""
    if f is None or f.is_empty():
        return ""
    parts = []
    if f.collections is not None:
        parts.append(f"collection in [{', '.join(_lit(c) for c in f.collections)}]")
    srcs = f.sources
    if srcs is not None:
        parts.append(f"source == {_lit(srcs[0])}" if len(srcs) == 1
                     else f"source in [{', '.join(_lit(s) for s in srcs)}]")
    if f.page_min is not None:
        parts.append(f"page >= {int(f.page_min)}")
    if f.page_max is not None:
        parts.append(f"page <= {int(f.page_max)}")
    return " and ".join(parts)


def parse_uri(uri: str) -> dict[str, Any]:
    """``milvus://PATH.db`` -> Lite folder; ``milvus://host:port`` -> server URL; plus options."""
    if not uri.lower().startswith("milvus://"):
        raise ConfigError(f"not a milvus URI: '{redact(uri)}' (expected milvus://./file.db or milvus://host:19530)")
    rest, _, query = uri[len("milvus://"):].partition("?")
    q = {k: v[-1] for k, v in parse_qs(query).items()}
    opts = {"collection": q.pop("collection", "chunks"), "consistency": q.pop("consistency", "Strong"),
            "timeout": float(q.pop("timeout", 10))}
    secure = q.pop("secure", "false").lower() in ("1", "true", "yes")
    if q:
        raise ConfigError(f"unknown parameter(s) {sorted(q)} in '{redact(uri)}' "
                          "(known: collection, consistency, timeout, secure)")
    if not opts["collection"].replace("_", "a").isalnum():
        raise ConfigError(f"invalid collection name '{opts['collection']}': use letters, digits and _")
    local = rest.startswith((".", "/", "~")) or rest.endswith(".db") or not rest
    if local:
        path = Path(rest or "./milvus.db").expanduser()
        return {**opts, "local": True, "client_uri": str(path), "display": f"milvus://{rest}"}
    if "@" in rest:  # user:password@host:port -> token; never shown
        cred, _, rest = rest.rpartition("@")
        opts["token"] = cred
    host = rest.rstrip("/")
    if ":" not in host:
        host += ":19530"
    return {**opts, "local": False, "client_uri": f"{'https' if secure else 'http'}://{host}",
            "display": f"milvus://{host}"}


class MilvusStore:
    """Chunks in a Milvus collection (COSINE metric), Lite or server."""

    def __init__(self, uri: str, **_: Any):
        from pymilvus import MilvusClient

        cfg = parse_uri(uri)
        self.uri = cfg["display"]
        self.collection = cfg["collection"]
        self.meta_collection = f"{self.collection}_meta"
        self.consistency = cfg["consistency"]
        self.timeout = cfg["timeout"]
        self.local = cfg["local"]
        token = cfg.get("token") or os.environ.get("MILVUS_TOKEN", "")
        if self.local:
            Path(cfg["client_uri"]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client = MilvusClient(uri=cfg["client_uri"], token=token, timeout=self.timeout)
            self._recover_migration()
            self._dim = self._existing_dim()
            if self._dim is not None and not self._has_collection_field():
                self._migrate(self._dim)
            if self._dim is not None:
                self.client.load_collection(self.collection, timeout=self.timeout)
        except Exception as e:
            raise StoreError(f"cannot open Milvus at {self.uri}: {redact(str(e))}. Next: "
                             + ("check that the folder is writable and not used by another process"
                                if self.local else "check that the server is running and reachable, "
                                "and MILVUS_TOKEN")) from e
        self._dirty = False

    def _call(self, what: str, fn, *args, **kw):
        return call_store(self.uri, what, fn, *args, passthrough=(ValueError,), **kw)

    # -- collections ----------------------------------------------------------------------------
    def _existing_dim(self) -> int | None:
        if not self.client.has_collection(self.collection):
            return None
        desc = self.client.describe_collection(self.collection)
        for f in desc["fields"]:
            if f["name"] == "vector":
                return int(f["params"]["dim"])
        return None

    def _has_collection_field(self) -> bool:
        return any(f["name"] == "collection" for f in self.client.describe_collection(self.collection)["fields"])

    @property
    def _migrating(self) -> str:
        return f"{self.collection}_v2_migrating"

    def _recover_migration(self) -> None:
        """A migration killed after dropping the old collection: its complete copy takes the name."""
        if self.client.has_collection(self._migrating) and not self.client.has_collection(self.collection):
            self.client.rename_collection(self._migrating, self.collection, timeout=self.timeout)

    def _migrate(self, dim: int) -> None:
        """Schema 1 -> 2: copy every row (vectors included) into a collection with the partition key."""
        if self.client.has_collection(self._migrating):  # a copy that did not finish: start over
            self.client.drop_collection(self._migrating)
        self._create(self._migrating, dim)
        self.client.load_collection(self.collection, timeout=self.timeout)
        it = self.client.query_iterator(self.collection, batch_size=1000, output_fields=["*"], timeout=self.timeout)
        try:
            while batch := it.next():
                rows = [{**{k: r[k] for k in _FIELDS[:-1] + ["vector"]}, "collection": DEFAULT_COLLECTION}
                        for r in batch]
                self.client.upsert(self._migrating, rows, timeout=self.timeout)
        finally:
            it.close()
        self.client.flush(self._migrating, timeout=self.timeout)
        self.client.release_collection(self.collection, timeout=self.timeout)
        self.client.drop_collection(self.collection)
        self.client.rename_collection(self._migrating, self.collection, timeout=self.timeout)

    def _ensure_collection(self, dim: int) -> None:
        if self._dim is not None:
            if self._dim != dim:
                raise IndexMismatchError(f"{self.uri} collection '{self.collection}' holds {self._dim}-d vectors, "
                                         f"got {dim}-d: use the same embedder or ?collection=OTHER")
            return
        self._create(self.collection, dim)
        self._dim = dim

    def _create(self, name: str, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("text", DataType.VARCHAR, max_length=_MAX_TEXT)
        schema.add_field("source", DataType.VARCHAR, max_length=2048)
        schema.add_field("page", DataType.INT64)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("file_hash", DataType.VARCHAR, max_length=128)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("collection", DataType.VARCHAR, max_length=64, is_partition_key=True)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="COSINE")
        index.add_index(field_name="collection", index_type="INVERTED")  # exact counts and deletes by collection
        try:
            self._call("create collection", self.client.create_collection, name, schema=schema,
                       index_params=index, consistency_level=self.consistency, timeout=self.timeout)
        except StoreError:
            if not self.client.has_collection(name):  # not another ingest creating it at the same moment
                raise

    def _ensure_meta(self) -> None:
        if self.client.has_collection(self.meta_collection):
            return
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one; unused
        schema.add_field("value", DataType.VARCHAR, max_length=_MAX_TEXT)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="L2")
        try:
            self.client.create_collection(self.meta_collection, schema=schema, index_params=index,
                                          consistency_level="Strong", timeout=self.timeout)
        except Exception:
            if not self.client.has_collection(self.meta_collection):  # not another ingest creating it
                raise

    def _ready(self) -> None:
        """Flush pending writes and load the collection, so searches use the index."""
        if self._dirty and self._dim is not None:
            self._call("flush", self.client.flush, self.collection, timeout=self.timeout)
            self._call("load", self.client.load_collection, self.collection, timeout=self.timeout)
            self._dirty = False

    # -- info -----------------------------------------------------------------------------------
    def get_info(self) -> dict[str, Any] | None:
        if not self.client.has_collection(self.meta_collection):
            return None
        self.client.load_collection(self.meta_collection, timeout=self.timeout)
        rows = self._call("get info", self.client.get, self.meta_collection, ids=["info"],
                          output_fields=["value"], timeout=self.timeout)
        return json.loads(rows[0]["value"]) if rows else None

    def set_info(self, info: dict[str, Any]) -> None:
        self._ensure_meta()
        self._call("set info", self.client.upsert, self.meta_collection,
                   [{"key": "info", "vector": [1.0, 0.0], "value": json.dumps(info)}], timeout=self.timeout)
        self.client.flush(self.meta_collection, timeout=self.timeout)

    # -- writes ---------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray, batch_size: int = 1000) -> None:
        if not chunks:
            return
        vecs = to_vectors(vectors, len(chunks))
        self._ensure_collection(vecs.shape[1])
        latest = {c.id: i for i, c in enumerate(chunks)}
        rows = []
        for i in sorted(latest.values()):
            c = chunks[i]
            if len(c.text.encode()) > _MAX_TEXT:
                raise StoreError(f"{self.uri}: chunk '{c.id}' has {len(c.text.encode())} bytes of text; Milvus "
                                 f"allows {_MAX_TEXT}: use a smaller --chunk-size")
            rows.append({"id": c.id, "vector": vecs[i].tolist(), "text": c.text, "source": c.source,
                         "page": int(c.page), "chunk_index": int(c.chunk_index), "file_hash": c.file_hash or "",
                         "metadata": c.metadata or {}, "collection": c.collection})
        for i in range(0, len(rows), batch_size):
            self._call("upsert", self.client.upsert, self.collection, rows[i:i + batch_size], timeout=self.timeout)
        self._dirty = True

    def delete_source(self, source: str, collection: str = DEFAULT_COLLECTION) -> int:
        if self._dim is None:
            return 0
        expr = filter_to_expr(Filter(source=source, collections=[collection]))
        n = self._count(expr)
        if n:
            self._call("delete", self.client.delete, self.collection, filter=expr, timeout=self.timeout)
            self._dirty = True
        return n

    # -- reads ----------------------------------------------------------------------------------
    def _count(self, expr: str = "") -> int:
        rows = self._call("count", self.client.query, self.collection, filter=expr, output_fields=["count(*)"],
                          timeout=self.timeout)
        return int(rows[0]["count(*)"]) if rows else 0

    def count(self) -> int:
        return 0 if self._dim is None else self._count()

    def sources(self, collections: list[str] | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        if collections is not None and not collections:
            return out
        for batch in self._iter(["source"], 4000, filter_to_expr(Filter(collections=collections))):
            for r in batch:
                out[r["source"]] = out.get(r["source"], 0) + 1
        return out

    def collections(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for batch in self._iter(["collection"], 4000):
            for r in batch:
                out[r["collection"]] = out.get(r["collection"], 0) + 1
        return out

    def _iter(self, fields: list[str], batch_size: int, expr: str = "") -> Iterator[list[dict]]:
        if self._dim is None:
            return
        it = self._call("query", self.client.query_iterator, self.collection, batch_size=batch_size,
                        filter=expr, output_fields=fields, timeout=self.timeout)
        try:
            while True:
                batch = it.next()
                if not batch:
                    return
                yield batch
        finally:
            it.close()

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        for batch in self._iter(_FIELDS + ["vector"], batch_size):
            yield ([self._chunk(r) for r in batch],
                   np.asarray([r["vector"] for r in batch], dtype=np.float32))

    @staticmethod
    def _chunk(r: dict) -> Chunk:
        return Chunk(r["id"], r["text"], r["source"], int(r["page"]), int(r["chunk_index"]), r.get("file_hash", ""),
                     dict(r.get("metadata") or {}), r.get("collection") or DEFAULT_COLLECTION)

    def search(self, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        if self._dim is None or k <= 0 or (filter is not None and filter.collections == []):
            return []
        self._ready()
        q = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        res = self._call("search", self.client.search, self.collection, data=[q], limit=int(k),
                         filter=filter_to_expr(filter), output_fields=_FIELDS,
                         search_params={"metric_type": "COSINE"}, timeout=self.timeout)
        hits = []
        for r in res[0]:
            e = r["entity"]
            c = self._chunk({**e, "id": e.get("id", r.get("id"))})
            hits.append(Hit.from_chunk(c, float(r["distance"])))  # COSINE "distance" is the similarity
        return hits

    def drop(self) -> None:
        """Delete the collection, its info and its ingest manifest (tests, ``--reset``)."""
        # A manifest left behind would call every file of the next ingest unchanged: an empty index.
        for name in (self.collection, self.meta_collection, f"{self.collection}_manifest"):
            if self.client.has_collection(name):
                self.client.drop_collection(name)
        self._dim, self._dirty = None, False

    def close(self) -> None:
        try:
            self._ready()
        finally:
            self.client.close()

    def __repr__(self) -> str:
        return f"MilvusStore({self.uri!r})"
