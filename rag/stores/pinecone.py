"""Pinecone store: ``pinecone://INDEX[?namespace=NS&cloud=aws&region=us-east-1]``.

The API key comes from ``PINECONE_API_KEY`` only (never the URI). A missing index is created
(serverless, cosine, dimension from the first upsert or from ``info["dim"]``) in ``cloud`` /
``region`` (defaults aws / us-east-1).

Why this shape:
- Record id = chunk id (sha1 of it when it is not ASCII or too long: Pinecone ids must be
  ASCII), so upsert replaces by chunk id; the chunk id is kept in metadata as ``chunk_id``.
- Metadata values must be flat (str/number/bool/list of str): chunk metadata is stored as a
  JSON string ``metadata_json``; ``source`` and ``page`` stay plain so filters work on them.
- The build info lives in the index itself: one record per namespace in the reserved
  namespace ``__ragtune_meta__`` (never searched), with the info as a JSON string.
- Pinecone has no group-by: ``sources()``, ``iter_chunks()`` and ``delete_source()`` page
  through ids (``list``) and ``fetch`` them; fine for a migration or a re-ingest, O(n).
- Pinecone is eventually consistent: ``count()`` (index stats) and freshly upserted records
  can lag writes by a few seconds.
- Collections (ragtune's) are a ``collection`` metadata value in the query's filter, which
  Pinecone applies inside the ANN search ("retrieve exactly the number of nearest-neighbour
  results that match the filters"). Not namespaces: the URI's namespace stays the store's own,
  and one query can span several collections. Records written before collections have no
  ``collection`` and count as ``default`` (``$exists: false`` joins the filter for default), so
  old indexes need no rewrite.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from rag.errors import ConfigError, IndexMismatchError, StoreError, redact
from rag.stores import call_store, to_vectors
from rag.types import DEFAULT_COLLECTION, Chunk, Filter, Hit

META_NAMESPACE = "__ragtune_meta__"
_BATCH = 100          # records per upsert request (stays far below the 2 MB request limit)
_FETCH = 100          # ids per fetch request


def filter_to_pinecone(f: Filter | None) -> dict[str, Any] | None:
    """Translate a Filter into a Pinecone metadata filter dict (None = no filter)."""
    if f is None or f.is_empty():
        return None
    parts: list[dict[str, Any]] = []
    if f.collections is not None:
        names = list(f.collections)
        cond: dict[str, Any] = {"collection": {"$in": names}}
        if DEFAULT_COLLECTION in names:  # records from before collections carry none: they are default
            cond = {"$or": [cond, {"collection": {"$exists": False}}]}
        parts.append(cond)
    srcs = f.sources
    if srcs is not None:
        parts.append({"source": {"$eq": srcs[0]}} if len(srcs) == 1 else {"source": {"$in": list(srcs)}})
    page: dict[str, int] = {}
    if f.page_min is not None:
        page["$gte"] = int(f.page_min)
    if f.page_max is not None:
        page["$lte"] = int(f.page_max)
    if page:
        parts.append({"page": page})
    return parts[0] if len(parts) == 1 else {"$and": parts}


def record_id(chunk_id: str) -> str:
    """The Pinecone record id of a chunk (ASCII, at most 512 characters)."""
    if chunk_id.isascii() and 0 < len(chunk_id) <= 512 and "\x00" not in chunk_id:
        return chunk_id
    return "sha1-" + hashlib.sha1(chunk_id.encode()).hexdigest()


def to_record(chunk: Chunk, vector: np.ndarray) -> dict[str, Any]:
    return {"id": record_id(chunk.id), "values": [float(x) for x in vector], "metadata": {
        "chunk_id": chunk.id, "text": chunk.text, "source": chunk.source, "page": int(chunk.page),
        "chunk_index": int(chunk.chunk_index), "file_hash": chunk.file_hash or "",
        "metadata_json": json.dumps(chunk.metadata or {}, ensure_ascii=False), "collection": chunk.collection}}


def from_metadata(md: dict[str, Any]) -> Chunk:
    return Chunk(md["chunk_id"], md.get("text", ""), md["source"], int(md.get("page", 0)),
                 int(md.get("chunk_index", 0)), md.get("file_hash", ""), json.loads(md.get("metadata_json") or "{}"),
                 md.get("collection", DEFAULT_COLLECTION))


def parse_uri(uri: str) -> dict[str, Any]:
    if not uri.lower().startswith("pinecone://"):
        raise ConfigError(f"not a pinecone URI: '{redact(uri)}' (expected pinecone://INDEX[?namespace=NS])")
    name, _, query = uri[len("pinecone://"):].partition("?")
    name = name.strip("/")
    q = {k: v[-1] for k, v in parse_qs(query).items()}
    if not name or "@" in name:
        raise ConfigError(f"'{redact(uri)}': give the index name (pinecone://INDEX); the key goes in PINECONE_API_KEY")
    opts = {"index": name, "namespace": q.pop("namespace", ""), "cloud": q.pop("cloud", "aws"),
            "region": q.pop("region", "us-east-1"), "timeout": float(q.pop("timeout", 30))}
    if q:
        raise ConfigError(f"unknown parameter(s) {sorted(q)} in '{redact(uri)}' "
                          "(known: namespace, cloud, region, timeout)")
    if opts["namespace"] == META_NAMESPACE:
        raise ConfigError(f"namespace '{META_NAMESPACE}' is reserved for ragtune's index info")
    return opts


def _page_ids(page: Any) -> list[str]:
    """Ids of one ``Index.list`` page across SDK versions (list of str, or ListResponse)."""
    if isinstance(page, (list, tuple)):
        return [p if isinstance(p, str) else p.id for p in page]
    return [v if isinstance(v, str) else v.id for v in page.vectors]


class PineconeStore:
    """Chunks as records in a Pinecone serverless index (cosine), one namespace per store."""

    def __init__(self, uri: str, *, client: Any = None, **_: Any):
        cfg = parse_uri(uri)
        self.index_name = cfg["index"]
        self.namespace = cfg["namespace"]
        self.uri = f"pinecone://{self.index_name}" + (f"?namespace={self.namespace}" if self.namespace else "")
        self._cfg = cfg
        if client is None:
            key = os.environ.get("PINECONE_API_KEY")
            if not key:
                raise StoreError(f"{self.uri}: PINECONE_API_KEY is not set. Next: export PINECONE_API_KEY=... "
                                 "(from app.pinecone.io), or use another --store")
            from pinecone import Pinecone

            client = Pinecone(api_key=key, timeout=cfg["timeout"])
        self.pc = client
        self.index: Any = None
        self._dim: int | None = None
        try:
            if self.pc.has_index(self.index_name):
                self._open_index()
        except Exception as e:
            raise StoreError(f"cannot reach Pinecone index {self.uri}: {redact(str(e))}. "
                             "Next: check PINECONE_API_KEY and the network") from e

    def _open_index(self) -> None:
        desc = self.pc.describe_index(self.index_name)
        self._dim = int(desc.dimension) if getattr(desc, "dimension", None) else None
        metric = str(getattr(desc, "metric", "cosine")).lower()
        if "cosine" not in metric:
            raise IndexMismatchError(f"{self.uri} uses metric '{metric}'; ragtune needs cosine: use another index")
        self.index = self.pc.Index(self.index_name)

    def _call(self, what: str, fn, *args, **kw):
        return call_store(self.uri, what, fn, *args, **kw)

    def _ensure_index(self, dim: int) -> None:
        if self.index is not None:
            if self._dim is not None and self._dim != dim:
                raise IndexMismatchError(f"{self.uri} holds {self._dim}-d vectors, got {dim}-d: use the same "
                                         "embedder or another index")
            return
        from pinecone import ServerlessSpec

        self._call("create index", self.pc.create_index, name=self.index_name, dimension=dim, metric="cosine",
                   spec=ServerlessSpec(cloud=self._cfg["cloud"], region=self._cfg["region"]))
        self._open_index()

    # -- info -----------------------------------------------------------------------------------
    def _info_id(self) -> str:
        return "info:" + (self.namespace or "__default__")

    def get_info(self) -> dict[str, Any] | None:
        if self.index is None:
            return None
        res = self._call("get info", self.index.fetch, ids=[self._info_id()], namespace=META_NAMESPACE)
        rec = res.vectors.get(self._info_id())
        return json.loads(rec.metadata["info"]) if rec is not None else None

    def set_info(self, info: dict[str, Any]) -> None:
        if self.index is None:
            if not info.get("dim"):
                raise StoreError(f"{self.uri}: the index does not exist yet; set info with a 'dim' or upsert first")
            self._ensure_index(int(info["dim"]))
        dim = self._dim or int(info["dim"])
        unit = [1.0] + [0.0] * (dim - 1)  # Pinecone rejects all-zero dense vectors
        self._call("set info", self.index.upsert, vectors=[{"id": self._info_id(), "values": unit,
                                                            "metadata": {"info": json.dumps(info)}}],
                   namespace=META_NAMESPACE)

    # -- writes ---------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if not chunks:
            return
        vecs = to_vectors(vectors, len(chunks))
        self._ensure_index(vecs.shape[1])
        latest = {c.id: i for i, c in enumerate(chunks)}
        records = [to_record(chunks[i], vecs[i]) for i in sorted(latest.values())]
        for i in range(0, len(records), _BATCH):
            self._call("upsert", self.index.upsert, vectors=records[i:i + _BATCH], namespace=self.namespace)

    def _ids_where(self, flt: dict[str, Any]) -> list[str]:
        ids: list[str] = []
        for recs in self._scan():
            ids += [rid for rid, md in recs if _matches(md, flt)]
        return ids

    def delete_source(self, source: str, collection: str = DEFAULT_COLLECTION) -> int:
        if self.index is None:
            return 0
        ids = self._ids_where(filter_to_pinecone(Filter(source=source, collections=[collection])))
        for i in range(0, len(ids), 1000):
            self._call("delete", self.index.delete, ids=ids[i:i + 1000], namespace=self.namespace)
        return len(ids)

    # -- reads ----------------------------------------------------------------------------------
    def count(self) -> int:
        if self.index is None:
            return 0
        stats = self._call("stats", self.index.describe_index_stats)
        ns = (getattr(stats, "namespaces", None) or {}).get(self.namespace)
        return int(getattr(ns, "vector_count", 0) or 0) if ns is not None else 0

    def _scan(self, values: bool = False) -> Iterator[list[tuple[str, dict[str, Any]]] | list[tuple]]:
        """Every record of the namespace, a fetch page at a time: [(id, metadata[, values])]."""
        for page in self._call("list", self.index.list, namespace=self.namespace):
            ids = _page_ids(page)
            for i in range(0, len(ids), _FETCH):
                res = self._call("fetch", self.index.fetch, ids=ids[i:i + _FETCH], namespace=self.namespace)
                yield [((rid, rec.metadata or {}, rec.values) if values else (rid, rec.metadata or {}))
                       for rid, rec in res.vectors.items()]

    def sources(self, collections: list[str] | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.index is None:
            return out
        for recs in self._scan():
            for _, md in recs:
                if collections is None or md.get("collection", DEFAULT_COLLECTION) in collections:
                    out[md["source"]] = out.get(md["source"], 0) + 1
        return out

    def collections(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.index is None:
            return out
        for recs in self._scan():
            for _, md in recs:
                c = md.get("collection", DEFAULT_COLLECTION)
                out[c] = out.get(c, 0) + 1
        return out

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        if self.index is None:
            return
        buf: list[tuple] = []
        for recs in self._scan(values=True):
            buf += recs
            while len(buf) >= batch_size:
                part, buf = buf[:batch_size], buf[batch_size:]
                yield [from_metadata(md) for _, md, _ in part], np.asarray([v for *_, v in part], dtype=np.float32)
        if buf:
            yield [from_metadata(md) for _, md, _ in buf], np.asarray([v for *_, v in buf], dtype=np.float32)

    def search(self, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        if self.index is None or k <= 0 or (filter is not None and filter.collections == []):
            return []
        q = [float(x) for x in np.asarray(vector, dtype=np.float32).reshape(-1)]
        kw: dict[str, Any] = {"vector": q, "top_k": int(k), "namespace": self.namespace, "include_metadata": True}
        flt = filter_to_pinecone(filter)
        if flt is not None:
            kw["filter"] = flt
        res = self._call("query", self.index.query, **kw)
        return [Hit.from_chunk(from_metadata(m.metadata), float(m.score)) for m in res.matches]

    def drop(self) -> None:
        """Delete this namespace's records and info (tests); the index itself stays."""
        if self.index is None:
            return
        for ns in (self.namespace,):
            try:
                self.index.delete(delete_all=True, namespace=ns)
            except Exception:  # noqa: BLE001 - a namespace that never existed
                pass
        try:
            self.index.delete(ids=[self._info_id()], namespace=META_NAMESPACE)
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        close = getattr(self.index, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"PineconeStore({self.uri!r})"


def _matches(md: dict[str, Any], flt: dict[str, Any] | None) -> bool:
    """Evaluate a filter dict from ``filter_to_pinecone`` on one record's metadata (client side)."""
    if not flt:
        return True
    if "$and" in flt:
        return all(_matches(md, f) for f in flt["$and"])
    if "$or" in flt:
        return any(_matches(md, f) for f in flt["$or"])
    for field, cond in flt.items():
        v = md.get(field)
        for op, arg in cond.items():
            if op == "$exists":
                ok = (field in md) == arg
            elif op == "$eq":
                ok = v == arg
            elif op == "$in":
                ok = v in arg
            elif op == "$gte":
                ok = v is not None and v >= arg
            elif op == "$lte":
                ok = v is not None and v <= arg
            else:
                raise ValueError(f"unsupported filter operator {op}")
            if not ok:
                return False
    return True
