"""Filter translation for every backend, offline (no server, no key)."""

from __future__ import annotations

import pytest

from rag.types import Filter


def test_pgvector_where_clause():
    pytest.importorskip("psycopg")
    from rag.stores.pgvector import filter_to_sql

    assert filter_to_sql(None) == ("", [])
    assert filter_to_sql(Filter()) == ("", [])
    assert filter_to_sql(Filter(source="a.pdf")) == ("source = %s", ["a.pdf"])
    assert filter_to_sql(Filter(source=["a", "b"], page_min=2, page_max=5)) == (
        "source = ANY(%s) AND page >= %s AND page <= %s", [["a", "b"], 2, 5])
    # values are always parameters, never spliced into SQL
    where, params = filter_to_sql(Filter(source="x'; DROP TABLE chunks; --"))
    assert "DROP" not in where and params == ["x'; DROP TABLE chunks; --"]


def test_milvus_expression():
    pytest.importorskip("pymilvus")
    from rag.stores.milvus import filter_to_expr

    assert filter_to_expr(None) == ""
    assert filter_to_expr(Filter(source="a.pdf")) == 'source == "a.pdf"'
    assert filter_to_expr(Filter(source=["a", "b"], page_min=2)) == 'source in ["a", "b"] and page >= 2'
    assert filter_to_expr(Filter(page_max=3)) == "page <= 3"
    assert filter_to_expr(Filter(source='we"ird\\name')) == r'source == "we\"ird\\name"'


def test_qdrant_filter():
    pytest.importorskip("qdrant_client")
    from qdrant_client import models

    from rag.stores.qdrant import filter_to_qdrant

    assert filter_to_qdrant(None) is None and filter_to_qdrant(Filter()) is None
    f = filter_to_qdrant(Filter(source="a.pdf"))
    assert f == models.Filter(must=[models.FieldCondition(key="source", match=models.MatchValue(value="a.pdf"))])
    f = filter_to_qdrant(Filter(source=["a", "b"], page_min=2, page_max=4))
    assert f.must == [models.FieldCondition(key="source", match=models.MatchAny(any=["a", "b"])),
                      models.FieldCondition(key="page", range=models.Range(gte=2, lte=4))]
    assert filter_to_qdrant(Filter(page_min=7)).must[0].range == models.Range(gte=7)


def test_pinecone_filter_dict():
    from rag.stores.pinecone import _matches, filter_to_pinecone

    assert filter_to_pinecone(None) is None
    assert filter_to_pinecone(Filter(source="a.pdf")) == {"source": {"$eq": "a.pdf"}}
    assert filter_to_pinecone(Filter(source=["a", "b"])) == {"source": {"$in": ["a", "b"]}}
    assert filter_to_pinecone(Filter(page_min=2, page_max=5)) == {"page": {"$gte": 2, "$lte": 5}}
    both = filter_to_pinecone(Filter(source="a", page_max=3))
    assert both == {"$and": [{"source": {"$eq": "a"}}, {"page": {"$lte": 3}}]}
    # the client-side evaluator (used by delete_source) agrees with Filter.matches
    for f in (Filter(source="a", page_max=3), Filter(source=["a", "b"], page_min=2), Filter(page_min=1, page_max=1)):
        for src, page in (("a", 1), ("a", 4), ("b", 2), ("c", 1)):
            assert _matches({"source": src, "page": page}, filter_to_pinecone(f)) == f.matches(src, page)


def test_weaviate_filter_objects():
    pytest.importorskip("weaviate")
    from rag.stores.weaviate import filter_to_weaviate

    assert filter_to_weaviate(None) is None
    f = filter_to_weaviate(Filter(source="a.pdf"))
    assert (f.target, f.operator.value, f.value) == ("source", "Equal", "a.pdf")
    f = filter_to_weaviate(Filter(source=["a", "b"], page_min=2, page_max=4))
    parts = [(p.target, p.operator.value, p.value) for p in f.filters]
    assert type(f).__name__ == "_FilterAnd"
    assert parts == [("source", "ContainsAny", ["a", "b"]), ("page", "GreaterThanEqual", 2),
                     ("page", "LessThanEqual", 4)]


def test_langchain_filter_is_client_side():
    pytest.importorskip("langchain_core")
    from rag.stores.langchain import parse_uri

    cfg = parse_uri("langchain://langchain_core.vectorstores:InMemoryVectorStore?filter_mode=post&k=4&name=x")
    assert cfg["filter_mode"] == "post" and cfg["params"] == {"k": 4, "name": "x"}
