"""Weaviate store: ``weaviate://host:port/Collection[?grpc_port=50051&secure=false&tenant=T]``.

``weaviate:///Collection`` (no host) connects to ``WEAVIATE_URL`` (a Weaviate Cloud cluster URL);
``WEAVIATE_API_KEY`` is used whenever it is set. Both come from the environment only.

Why this shape:
- One collection (name must start with a capital letter) with self-provided vectors (cosine
  HNSW), object uuid = ``uuid5(chunk id)`` so re-upserting replaces; the chunk id is kept as a
  property. ``source`` uses FIELD tokenization so ``equal`` matches the whole path.
- The build info is the collection's description (JSON), so it lives with the collection.
- Writes go through the client's fixed-size batcher; failed objects raise ``StoreError``.
- Optional multi-tenancy: ``?tenant=NAME`` creates a multi-tenant collection and the tenant.
- Collections (ragtune's) are a ``collection`` property (FIELD tokenization, filterable) in the
  ``near_vector`` filter, which Weaviate applies inside the HNSW search (an allow-list, or ACORN
  on large filters), so k objects come back whenever k match. Not tenants: one query may span
  several collections, and ``?tenant=`` stays the store's own. A collection from before
  collections gets the property on open and its objects are rewritten with ``default`` (vectors
  kept); the info's ``_schema`` records that it is done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from rag.errors import ConfigError, IndexMismatchError, StoreError, redact
from rag.stores import call_store, to_vectors
from rag.types import DEFAULT_COLLECTION, Chunk, Filter, Hit

_PROPS = ["chunk_id", "text", "source", "page", "chunk_index", "file_hash", "metadata_json", "collection"]
_INFO_PREFIX = "ragtune-info:"
_SCHEMA = "_schema"  # kept in the description beside the info: 2 = objects carry a collection


def filter_to_weaviate(f: Filter | None) -> Any:
    """Translate a Filter into ``weaviate.classes.query.Filter`` objects (None = no filter)."""
    from weaviate.classes.query import Filter as WFilter

    if f is None or f.is_empty():
        return None
    parts = []
    if f.collections is not None:
        prop = WFilter.by_property("collection")
        names = list(f.collections)
        # contains_any([]) is refused by Weaviate: an impossible chunk id matches nothing instead
        parts.append(prop.contains_any(names) if names else WFilter.by_property("chunk_id").equal("\x00none"))
    srcs = f.sources
    if srcs is not None:
        prop = WFilter.by_property("source")
        parts.append(prop.equal(srcs[0]) if len(srcs) == 1 else prop.contains_any(list(srcs)))
    if f.page_min is not None:
        parts.append(WFilter.by_property("page").greater_or_equal(int(f.page_min)))
    if f.page_max is not None:
        parts.append(WFilter.by_property("page").less_or_equal(int(f.page_max)))
    return parts[0] if len(parts) == 1 else WFilter.all_of(parts)


def object_uuid(chunk_id: str) -> str:
    from weaviate.util import generate_uuid5

    return str(generate_uuid5(chunk_id))


def parse_uri(uri: str) -> dict[str, Any]:
    parts = urlsplit(uri)
    if parts.scheme.lower() != "weaviate":
        raise ConfigError(f"not a weaviate URI: '{redact(uri)}' (expected weaviate://host:8080/Collection)")
    q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    collection = parts.path.strip("/") or "Chunks"
    if not (collection[:1].isupper() and collection.replace("_", "a").isalnum()):
        raise ConfigError(f"invalid Weaviate collection '{collection}' in '{redact(uri)}': it must start with a "
                          "capital letter and hold only letters, digits and _")
    if parts.password or parts.username:
        raise ConfigError(f"put the Weaviate key in WEAVIATE_API_KEY, not in the URI '{redact(uri)}'")
    opts = {"collection": collection, "host": parts.hostname or "", "port": parts.port or 8080,
            "grpc_port": int(q.pop("grpc_port", 50051)), "tenant": q.pop("tenant", None),
            "secure": q.pop("secure", "false").lower() in ("1", "true", "yes"),
            "timeout": float(q.pop("timeout", 10))}
    if q:
        raise ConfigError(f"unknown parameter(s) {sorted(q)} in '{redact(uri)}' "
                          "(known: grpc_port, secure, tenant, timeout)")
    return opts


class WeaviateStore:
    """Chunks as objects in one Weaviate collection (self-provided vectors, cosine)."""

    def __init__(self, uri: str, *, client: Any = None, **_: Any):
        cfg = parse_uri(uri)
        self.name = cfg["collection"]
        self.tenant = cfg["tenant"]
        where = f"{cfg['host']}:{cfg['port']}" if cfg["host"] else "WEAVIATE_URL"
        self.uri = f"weaviate://{where}/{self.name}" + (f"?tenant={self.tenant}" if self.tenant else "")
        self._pending_info: dict[str, Any] | None = None
        try:
            self.client = client if client is not None else self._connect(cfg)
            self._dim = self._existing_dim()
            if self._dim:
                self._migrate()
        except (StoreError, ConfigError):
            raise
        except Exception as e:
            raise StoreError(f"cannot connect to Weaviate at {self.uri}: {redact(str(e))}. Next: check that "
                             "the server is running (HTTP and gRPC ports), WEAVIATE_URL and WEAVIATE_API_KEY") from e

    @staticmethod
    def _connect(cfg: dict[str, Any]) -> Any:
        import weaviate
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout

        key = os.environ.get("WEAVIATE_API_KEY")
        auth = Auth.api_key(key) if key else None
        extra = AdditionalConfig(timeout=Timeout(init=cfg["timeout"], query=max(30, cfg["timeout"]), insert=120))
        if not cfg["host"]:
            url = os.environ.get("WEAVIATE_URL")
            if not url:
                raise StoreError("weaviate:///COLLECTION needs WEAVIATE_URL (a cloud cluster URL with "
                                 "WEAVIATE_API_KEY, or http://host:8080); or give host:port in the URI")
            if key and (".weaviate.cloud" in url or ".weaviate.network" in url):
                return weaviate.connect_to_weaviate_cloud(url, auth_credentials=auth, additional_config=extra)
            u = urlsplit(url if "://" in url else f"http://{url}")  # a self-hosted server
            secure = u.scheme == "https"
            return weaviate.connect_to_custom(
                http_host=u.hostname, http_port=u.port or (443 if secure else 8080), http_secure=secure,
                grpc_host=u.hostname, grpc_port=cfg["grpc_port"], grpc_secure=secure, auth_credentials=auth,
                additional_config=extra)
        return weaviate.connect_to_custom(
            http_host=cfg["host"], http_port=cfg["port"], http_secure=cfg["secure"], grpc_host=cfg["host"],
            grpc_port=cfg["grpc_port"], grpc_secure=cfg["secure"], auth_credentials=auth, additional_config=extra)

    def _call(self, what: str, fn, *args, **kw):
        return call_store(self.uri, what, fn, *args, **kw)

    # -- collection -----------------------------------------------------------------------------
    def _coll(self) -> Any:
        c = self.client.collections.get(self.name)
        return c.with_tenant(self.tenant) if self.tenant else c

    def _existing_dim(self) -> int | None:
        if not self.client.collections.exists(self.name):
            return None
        cfg = self.client.collections.get(self.name).config.get()
        desc = cfg.description or ""
        info = json.loads(desc[len(_INFO_PREFIX):]) if desc.startswith(_INFO_PREFIX) else {}
        # Weaviate does not record a self-provided vector's size; the info (or a stored object) does
        if info.get("dim"):
            return int(info["dim"])
        for obj in self._coll().iterator(include_vector=True):
            return len(_vector_of(obj))
        return 0  # exists but empty: any dim accepted

    def _description(self) -> dict[str, Any]:
        desc = self.client.collections.get(self.name).config.get().description or ""
        return json.loads(desc[len(_INFO_PREFIX):]) if desc.startswith(_INFO_PREFIX) else {}

    def _migrate(self) -> None:
        """Schema 1 -> 2: add the collection property, rewrite every object as 'default' (idempotent)."""
        stored = self._description()
        if stored.get(_SCHEMA, 1) >= 2:
            return
        from weaviate.classes.config import DataType, Property, Tokenization

        base = self.client.collections.get(self.name)
        if "collection" not in {p.name for p in base.config.get().properties}:
            self._call("migrate", base.config.add_property,
                       Property(name="collection", data_type=DataType.TEXT, tokenization=Tokenization.FIELD))
        coll = self._coll()
        objs = [(o.uuid, o.properties, _vector_of(o)) for o in coll.iterator(include_vector=True)]
        with coll.batch.fixed_size(batch_size=200) as batch:
            for uid, props, vec in objs:
                if not props.get("collection"):
                    batch.add_object(properties={**props, "collection": DEFAULT_COLLECTION}, uuid=uid, vector=vec)
        if coll.batch.failed_objects:
            raise StoreError(f"{self.uri}: migrating to collections failed for {len(coll.batch.failed_objects)} "
                             "object(s); open the store again to retry")
        self._call("migrate", base.config.update, description=_INFO_PREFIX + json.dumps({**stored, _SCHEMA: 2}))

    def _ensure_collection(self, dim: int) -> None:
        if self._dim:
            if self._dim != dim:
                raise IndexMismatchError(f"{self.uri} holds {self._dim}-d vectors, got {dim}-d: use the same "
                                         "embedder or another collection")
            return
        if self._dim is None:
            from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances

            text = dict(data_type=DataType.TEXT)
            props = [Property(name="chunk_id", tokenization=Tokenization.FIELD, **text),
                     Property(name="text", **text),
                     Property(name="source", tokenization=Tokenization.FIELD, **text),
                     Property(name="page", data_type=DataType.INT),
                     Property(name="chunk_index", data_type=DataType.INT),
                     Property(name="file_hash", tokenization=Tokenization.FIELD, **text),
                     Property(name="metadata_json", index_filterable=False, index_searchable=False, **text),
                     Property(name="collection", tokenization=Tokenization.FIELD, **text)]
            info = dict(self._pending_info or {}, dim=dim, **{_SCHEMA: 2})
            hnsw = Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
            kw: dict[str, Any] = {"vector_config": Configure.Vectors.self_provided(vector_index_config=hnsw)}
            if self.tenant:
                kw["multi_tenancy_config"] = Configure.multi_tenancy(enabled=True, auto_tenant_creation=True)
            self._call("create collection", self.client.collections.create, self.name, properties=props,
                       description=_INFO_PREFIX + json.dumps(info), **kw)
        if self.tenant:
            from weaviate.classes.tenants import Tenant

            base = self.client.collections.get(self.name)
            if self.tenant not in base.tenants.get():
                self._call("create tenant", base.tenants.create, [Tenant(name=self.tenant)])
        self._dim, self._pending_info = dim, None

    # -- info -----------------------------------------------------------------------------------
    def get_info(self) -> dict[str, Any] | None:
        if self._dim is None:
            return self._pending_info
        desc = self._call("get info", self.client.collections.get(self.name).config.get).description or ""
        info = json.loads(desc[len(_INFO_PREFIX):]) if desc.startswith(_INFO_PREFIX) else None
        info = {k: v for k, v in (info or {}).items() if k != _SCHEMA}
        return info if info and set(info) != {"dim"} else None

    def set_info(self, info: dict[str, Any]) -> None:
        if self._dim is None:
            self._pending_info = dict(info)
            if info.get("dim"):
                self._ensure_collection(int(info["dim"]))
            return
        self._call("set info", self.client.collections.get(self.name).config.update,
                   description=_INFO_PREFIX + json.dumps({**info, _SCHEMA: 2}))

    # -- writes ---------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray, batch_size: int = 200) -> None:
        if not chunks:
            return
        vecs = to_vectors(vectors, len(chunks))
        self._ensure_collection(vecs.shape[1])
        latest = {c.id: i for i, c in enumerate(chunks)}
        coll = self._coll()
        with coll.batch.fixed_size(batch_size=batch_size) as batch:
            for i in sorted(latest.values()):
                c = chunks[i]
                batch.add_object(properties=_props(c), uuid=object_uuid(c.id), vector=vecs[i].tolist())
        failed = coll.batch.failed_objects
        if failed:
            raise StoreError(f"{self.uri}: {len(failed)} object(s) failed to write, first: "
                             f"{redact(str(failed[0].message))}")

    def delete_source(self, source: str, collection: str = DEFAULT_COLLECTION) -> int:
        if not self._dim:
            return 0
        res = self._call("delete", self._coll().data.delete_many,
                         where=filter_to_weaviate(Filter(source=source, collections=[collection])))
        return int(res.successful)

    # -- reads ----------------------------------------------------------------------------------
    def count(self) -> int:
        if not self._dim:
            return 0
        return int(self._call("count", self._coll().aggregate.over_all, total_count=True).total_count or 0)

    def sources(self, collections: list[str] | None = None) -> dict[str, int]:
        return self._group("source", filter_to_weaviate(Filter(collections=collections)))

    def collections(self) -> dict[str, int]:
        return self._group("collection", None)

    def _group(self, prop: str, where: Any) -> dict[str, int]:
        if not self._dim or (where is not None and prop == "source" and _is_nothing(where)):
            return {}
        from weaviate.classes.aggregate import GroupByAggregate

        res = self._call("count by " + prop, self._coll().aggregate.over_all, filters=where,
                         group_by=GroupByAggregate(prop=prop, limit=1_000_000), total_count=True)
        return {g.grouped_by.value: int(g.total_count) for g in res.groups}

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        if not self._dim:
            return
        buf: list[Any] = []
        for obj in self._coll().iterator(include_vector=True, return_properties=_PROPS):
            buf.append(obj)
            if len(buf) >= batch_size:
                yield _batch(buf)
                buf = []
        if buf:
            yield _batch(buf)

    def search(self, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        if not self._dim or k <= 0 or (filter is not None and filter.collections == []):
            return []
        from weaviate.classes.query import MetadataQuery

        q = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        res = self._call("search", self._coll().query.near_vector, near_vector=q, limit=int(k),
                         filters=filter_to_weaviate(filter), return_properties=_PROPS,
                         return_metadata=MetadataQuery(distance=True))
        return [Hit.from_chunk(_chunk(o.properties), 1.0 - float(o.metadata.distance)) for o in res.objects]

    def drop(self) -> None:
        """Delete the collection and its info (tests, ``--reset``)."""
        if self.client.collections.exists(self.name):
            self.client.collections.delete(self.name)
        self._dim, self._pending_info = None, None

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"WeaviateStore({self.uri!r})"


def _props(c: Chunk) -> dict[str, Any]:
    return {"chunk_id": c.id, "text": c.text, "source": c.source, "page": int(c.page),
            "chunk_index": int(c.chunk_index), "file_hash": c.file_hash or "",
            "metadata_json": json.dumps(c.metadata or {}, ensure_ascii=False), "collection": c.collection}


def _chunk(p: dict[str, Any]) -> Chunk:
    return Chunk(p["chunk_id"], p.get("text") or "", p["source"], int(p.get("page") or 0),
                 int(p.get("chunk_index") or 0), p.get("file_hash") or "", json.loads(p.get("metadata_json") or "{}"),
                 p.get("collection") or DEFAULT_COLLECTION)


def _is_nothing(where: Any) -> bool:
    """The filter ``filter_to_weaviate`` makes for ``collections=[]``."""
    return getattr(where, "target", None) == "chunk_id" and getattr(where, "value", None) == "\x00none"


def _vector_of(obj: Any) -> list[float]:
    v = obj.vector
    return list(v.get("default", next(iter(v.values()))) if isinstance(v, dict) else v)


def _batch(objs: list[Any]) -> tuple[list[Chunk], np.ndarray]:
    return [_chunk(o.properties) for o in objs], np.asarray([_vector_of(o) for o in objs], dtype=np.float32)
