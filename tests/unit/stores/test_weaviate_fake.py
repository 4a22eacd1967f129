"""WeaviateStore's collection logic against an in-process FAKE of the Weaviate v4 client.

No Weaviate server can run here (no Docker; embedded mode downloads a binary at run time), so
this fake stands in for the client surface the store uses (collections.exists/get/create,
config.get/add_property/update, iterator, batch, data.delete_many, aggregate.over_all,
query.near_vector). It checks ragtune's side: the collection goes into the near_vector filter
(the fake applies it before ranking, as Weaviate's filtered HNSW does), deletes and counts are
per collection, and a collection written before collections is migrated to 'default'. The live
contract suite runs when WEAVIATE_URL is set.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from types import SimpleNamespace as NS

import numpy as np
import pytest

pytest.importorskip("weaviate")

from rag.stores import scoped_id  # noqa: E402
from rag.stores.weaviate import _INFO_PREFIX, WeaviateStore, object_uuid  # noqa: E402
from rag.types import Chunk, Filter  # noqa: E402


def _ok(props: dict, f) -> bool:
    if f is None:
        return True
    if hasattr(f, "filters"):  # all_of
        return all(_ok(props, x) for x in f.filters)
    v, op = props.get(f.target), f.operator.value
    return {"Equal": lambda: v == f.value, "ContainsAny": lambda: v in f.value,
            "GreaterThanEqual": lambda: v is not None and v >= f.value,
            "LessThanEqual": lambda: v is not None and v <= f.value}[op]()


class FakeCollection:
    def __init__(self, description: str, props: list[str]):
        self.description, self.props = description, list(props)
        self.objects: dict[str, tuple[dict, list[float]]] = {}
        self.failed_objects: list = []
        self.near_vector_filters: list = []
        self.config = NS(get=lambda: NS(description=self.description, properties=[NS(name=p) for p in self.props]),
                         add_property=lambda p: self.props.append(p.name), update=self._update)
        self.batch = NS(fixed_size=self._batch, failed_objects=[])
        self.data = NS(delete_many=self._delete_many)
        self.aggregate = NS(over_all=self._over_all)
        self.query = NS(near_vector=self._near_vector)

    def _update(self, description):
        self.description = description

    def with_tenant(self, tenant):
        return self

    def iterator(self, include_vector=False, return_properties=None):
        for uid, (props, vec) in list(self.objects.items()):
            yield NS(uuid=uid, properties=dict(props), vector={"default": list(vec)})

    @contextmanager
    def _batch(self, batch_size):
        yield NS(add_object=lambda properties, uuid, vector: self.objects.__setitem__(
            str(uuid), (dict(properties), list(vector))))

    def _delete_many(self, where):
        gone = [u for u, (p, _) in self.objects.items() if _ok(p, where)]
        for u in gone:
            del self.objects[u]
        return NS(successful=len(gone))

    def _over_all(self, filters=None, group_by=None, total_count=True):
        counts: dict[str, int] = {}
        for p, _ in self.objects.values():
            if _ok(p, filters):
                counts[p.get(group_by.prop)] = counts.get(p.get(group_by.prop), 0) + 1
        return NS(groups=[NS(grouped_by=NS(value=k), total_count=n) for k, n in counts.items()])

    def _near_vector(self, near_vector, limit, filters, return_properties, return_metadata):
        self.near_vector_filters.append(filters)
        q = np.asarray(near_vector)
        scored = sorted(((float(np.dot(q, v)), p) for p, v in self.objects.values() if _ok(p, filters)),
                        key=lambda t: -t[0])[:limit]
        return NS(objects=[NS(properties=p, metadata=NS(distance=1 - s)) for s, p in scored])


class FakeClient:
    def __init__(self):
        self.colls: dict[str, FakeCollection] = {}
        self.collections = NS(exists=lambda n: n in self.colls, get=lambda n: self.colls[n], create=self._create,
                              delete=lambda n: self.colls.pop(n, None))

    def _create(self, name, properties, description, **kw):
        self.colls[name] = FakeCollection(description, [p.name for p in properties])

    def close(self):
        pass


def _vecs(n, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 8)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_collections_go_into_the_search_filter():
    client = FakeClient()
    s = WeaviateStore("weaviate://localhost:8080/Chunks", client=client)
    v = _vecs(30)
    chunks = [Chunk(scoped_id(c, f"a#{i}"), f"{c} {i}", "a.pdf", 1, i, collection=c)
              for i, c in enumerate(["hr"] * 20 + ["legal"] * 10)]
    s.upsert(chunks, v)
    hits = s.search(v[0], 5, Filter(collections=["legal"]))
    assert len(hits) == 5 and {h.collection for h in hits} == {"legal"}
    f = client.colls["Chunks"].near_vector_filters[-1]
    assert (f.target, f.operator.value, f.value) == ("collection", "ContainsAny", ["legal"])
    assert s.search(v[0], 5, Filter(collections=[])) == []
    assert s.collections() == {"hr": 20, "legal": 10}
    assert s.sources(["legal"]) == {"a.pdf": 10} and s.sources([]) == {}
    assert s.delete_source("a.pdf", "legal") == 10 and s.collections() == {"hr": 20}
    assert s.delete_source("a.pdf") == 0  # default holds nothing: hr is untouched
    s.set_info({"embedder": "e", "dim": 8})
    assert s.get_info() == {"embedder": "e", "dim": 8}  # the schema marker is not part of the info


def test_a_collection_from_before_collections_is_migrated():
    client = FakeClient()
    info = {"embedder": "e", "dim": 8}
    client._create("Chunks", [NS(name=p) for p in ("chunk_id", "text", "source", "page", "chunk_index",
                                                     "file_hash", "metadata_json")],
                   _INFO_PREFIX + json.dumps(info))
    v = _vecs(6, seed=1)
    old = client.colls["Chunks"]
    for i in range(6):
        old.objects[object_uuid(f"old{i}")] = ({"chunk_id": f"old{i}", "text": f"t{i}", "source": "a.pdf", "page": 1,
                                                "chunk_index": i, "file_hash": "", "metadata_json": "{}"}, list(v[i]))
    s = WeaviateStore("weaviate://localhost:8080/Chunks", client=client)
    assert "collection" in old.props and s.get_info() == info
    assert s.collections() == {"default": 6}
    hit = s.search(v[2], 1, Filter(collections=["default"]))[0]
    assert (hit.id, hit.collection) == ("old2", "default") and hit.score == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(old.objects[object_uuid("old2")][1], v[2])  # vectors kept
    before = dict(old.objects)
    WeaviateStore("weaviate://localhost:8080/Chunks", client=client)  # marked done: nothing rewritten
    assert old.objects == before
