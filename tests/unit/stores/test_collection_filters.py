"""Collections in every backend's filter translation, offline, plus Pinecone's collection logic
against the in-process FAKE SDK of test_pinecone_fake (Pinecone has no local emulator: the fake
checks ragtune's side, i.e. that the collection goes into the query's filter and old records
count as default, not Pinecone's ANN)."""

from __future__ import annotations

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.stores import scoped_id
from rag.types import DEFAULT_COLLECTION, Chunk, Filter


def test_filter_collections_are_validated_lists():
    assert Filter(collections="hr").collections == ["hr"]  # never a substring test on a str
    assert not Filter(collections="hr").matches("a", 1, "h")
    assert Filter(collections=["hr", "hr", "legal"]).collections == ["hr", "legal"]
    assert Filter(collections=[]).matches("a", 1, "hr") is False
    assert Filter().matches("a", 1, "anything") and Filter().is_empty() and not Filter(collections=[]).is_empty()
    for bad in ("", "a b", "../x", "x" * 65, "-x", 'hr" or 1', None):
        with pytest.raises(ConfigError, match="collection"):
            Filter(collections=[bad])


def test_scoped_ids_differ_per_collection_and_keep_default():
    assert scoped_id(DEFAULT_COLLECTION, "abc") == "abc"
    a, b = scoped_id("hr", "abc"), scoped_id("legal", "abc")
    assert a != b and len(a) == 32 and a != "abc"
    assert scoped_id("hr", "abc") == a  # stable across runs


def test_pgvector_collection_clause():
    pytest.importorskip("psycopg")
    from rag.stores.pgvector import filter_to_sql

    assert filter_to_sql(Filter(collections=["hr"], source="a")) == (
        "collection = ANY(%s) AND source = %s", [["hr"], "a"])
    assert filter_to_sql(Filter(collections=[])) == ("collection = ANY(%s)", [[]])


def test_milvus_collection_expression():
    pytest.importorskip("pymilvus")
    from rag.stores.milvus import filter_to_expr

    assert filter_to_expr(Filter(collections=["hr", "x-1"], page_min=2)) == 'collection in ["hr", "x-1"] and page >= 2'


def test_qdrant_collection_condition():
    pytest.importorskip("qdrant_client")
    from qdrant_client import models

    from rag.stores.qdrant import filter_to_qdrant

    f = filter_to_qdrant(Filter(collections=["hr"], source="a"))
    assert f.must[0] == models.FieldCondition(key="collection", match=models.MatchAny(any=["hr"]))


def test_pinecone_collection_filter_and_legacy_records():
    from rag.stores.pinecone import _matches, filter_to_pinecone

    assert filter_to_pinecone(Filter(collections=["hr"])) == {"collection": {"$in": ["hr"]}}
    both = filter_to_pinecone(Filter(collections=["default", "hr"], source="a"))
    assert both == {"$and": [{"$or": [{"collection": {"$in": ["default", "hr"]}},
                                      {"collection": {"$exists": False}}]}, {"source": {"$eq": "a"}}]}
    legacy = {"source": "a", "page": 1}  # written before collections: no collection key
    assert _matches(legacy, both) and not _matches(legacy, filter_to_pinecone(Filter(collections=["hr"])))
    assert _matches({"source": "a", "page": 1, "collection": "hr"}, both)
    assert not _matches({"source": "a", "page": 1, "collection": "legal"}, both)


def test_weaviate_collection_filter():
    pytest.importorskip("weaviate")
    from rag.stores.weaviate import _is_nothing, filter_to_weaviate

    f = filter_to_weaviate(Filter(collections=["hr", "legal"]))
    assert (f.target, f.operator.value, f.value) == ("collection", "ContainsAny", ["hr", "legal"])
    assert _is_nothing(filter_to_weaviate(Filter(collections=[])))
    f = filter_to_weaviate(Filter(collections=["hr"], source="a"))
    assert [(p.target, p.operator.value) for p in f.filters] == [("collection", "ContainsAny"), ("source", "Equal")]


@pytest.fixture
def pc():
    pytest.importorskip("pinecone")
    from tests.unit.stores.test_pinecone_fake import FakePinecone

    return FakePinecone()


def test_pinecone_store_collections_with_fake_sdk(pc):
    from rag.stores.pinecone import PineconeStore

    s = PineconeStore("pinecone://idx", client=pc)
    rng = np.random.default_rng(0)
    q = rng.normal(size=8).astype(np.float32)
    q /= np.linalg.norm(q)
    chunks, vecs = [], []
    for coll, n, sign in (("big", 40, 3.0), ("small", 6, -1.0)):
        for i in range(n):
            v = rng.normal(size=8).astype(np.float32)
            v = v / np.linalg.norm(v) + sign * q
            vecs.append(v / np.linalg.norm(v))
            chunks.append(Chunk(scoped_id(coll, f"a#{i}"), f"{coll} {i}", "a.pdf", 1, i, collection=coll))
    s.upsert(chunks, np.vstack(vecs))
    # a record written the old way (no collection in its metadata) belongs to default
    pc.Index("idx").upsert(vectors=[{"id": "old#0", "values": [float(x) for x in q], "metadata": {
        "chunk_id": "old#0", "text": "old", "source": "a.pdf", "page": 1, "chunk_index": 0}}])
    assert s.collections() == {"big": 40, "small": 6, "default": 1}
    hits = s.search(q, 5, Filter(collections=["small"]))
    assert len(hits) == 5 and {h.collection for h in hits} == {"small"}
    assert [h.id for h in s.search(q, 3, Filter(collections=["default"]))] == ["old#0"]
    assert s.search(q, 3, Filter(collections=[])) == []
    assert s.delete_source("a.pdf", "small") == 6 and s.collections() == {"big": 40, "default": 1}
    assert s.sources(["default"]) == {"a.pdf": 1}
    assert s.delete_source("a.pdf") == 1 and s.collections() == {"big": 40}
