"""Indexes built before collections open unchanged: each backend's schema migration, tested by
writing rows exactly the way the previous schema did (its DDL / payload layout, copied here from
the code before collections) and opening them with the current store.

After opening: every old chunk is in the ``default`` collection with its id, text, metadata and
vector intact, searches (filtered by collection or not) return what they returned before, and the
store takes new chunks in other collections.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from rag.stores import open_store, scoped_id
from rag.types import Chunk, Filter

DIM = 8
N = 30
INFO = {"embedder": "test/fake-8", "dim": DIM, "schema": 1}


def _old_data() -> tuple[list[Chunk], np.ndarray]:
    rng = np.random.default_rng(11)
    vecs = rng.normal(size=(N, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    chunks = [Chunk(f"old{i}", f"old text {i}", f"doc{i % 3}.pdf", 1 + i % 4, i, f"h{i % 3}", {"i": i})
              for i in range(N)]
    return chunks, vecs


def _check_migrated(uri: str) -> None:
    chunks, vecs = _old_data()
    s = open_store(uri)
    try:
        assert s.get_info() == INFO
        assert s.count() == N and s.collections() == {"default": N}
        assert s.sources(["default"]) == {f"doc{j}.pdf": N // 3 for j in range(3)}
        for i in (0, 17):
            for f in (None, Filter(collections=["default"])):
                hit = s.search(vecs[i], 3, f)[0]
                assert (hit.id, hit.text, hit.collection, hit.metadata) == (
                    chunks[i].id, chunks[i].text, "default", {"i": i})
                assert hit.score == pytest.approx(1.0, abs=1e-4)
        assert s.search(vecs[0], 3, Filter(collections=["hr"])) == []
        got = {c.id: (c, v) for batch, arr in s.iter_chunks() for c, v in zip(batch, arr)}
        for c, v in zip(chunks, vecs):
            assert got[c.id][0].collection == "default" and got[c.id][0].text == c.text
            np.testing.assert_allclose(got[c.id][1], v, atol=1e-5)
        new = Chunk(scoped_id("hr", "old0"), "hr text", "doc0.pdf", 1, 0, collection="hr")
        s.upsert([new], vecs[:1])
        assert s.collections() == {"default": N, "hr": 1}
        assert [h.id for h in s.search(vecs[0], 5, Filter(collections=["hr"]))] == [new.id]
        assert s.delete_source("doc0.pdf", "hr") == 1 and s.count() == N
    finally:
        s.close()
    s = open_store(uri)  # a second open finds nothing left to migrate
    try:
        assert s.collections() == {"default": N}
    finally:
        s.close()


# -- embedded (SQLite + FAISS) ---------------------------------------------------------------------
_EMBEDDED_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE chunks (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
    page INTEGER NOT NULL DEFAULT 0, chunk_index INTEGER NOT NULL DEFAULT 0, file_hash TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', vec BLOB NOT NULL);
CREATE INDEX chunks_source_page ON chunks (source, page);
CREATE TABLE deleted (seq INTEGER PRIMARY KEY AUTOINCREMENT, row INTEGER NOT NULL);
"""


def test_embedded_v1_index_opens(tmp_path):
    chunks, vecs = _old_data()
    folder = tmp_path / "index"
    folder.mkdir()
    with sqlite3.connect(folder / "chunks.sqlite") as db:
        db.executescript(_EMBEDDED_V1)
        db.execute("INSERT INTO meta VALUES ('info', ?)", (json.dumps(INFO),))
        db.executemany("INSERT INTO chunks (id, source, page, chunk_index, file_hash, text, metadata, vec) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [(c.id, c.source, c.page, c.chunk_index, c.file_hash, c.text, json.dumps(c.metadata),
                         v.tobytes()) for c, v in zip(chunks, vecs)])
    _check_migrated(str(folder))


# -- pgvector --------------------------------------------------------------------------------------
def test_pgvector_v1_table_opens(pg_uri):
    import psycopg
    from pgvector.psycopg import register_vector

    from rag.stores.pgvector import parse_uri

    chunks, vecs = _old_data()
    cfg = parse_uri(pg_uri)
    table = cfg["table"]
    with psycopg.connect(**cfg["conn"], autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(f"CREATE TABLE {table}_meta (key text PRIMARY KEY, value jsonb NOT NULL)")
        conn.execute(f"INSERT INTO {table}_meta VALUES ('info', %s)", (json.dumps(INFO),))
        conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, source text NOT NULL, "
                     "page integer NOT NULL DEFAULT 0, chunk_index integer NOT NULL DEFAULT 0, "
                     "file_hash text NOT NULL DEFAULT '', text text NOT NULL, "
                     f"metadata jsonb NOT NULL DEFAULT '{{}}', embedding vector({DIM}) NOT NULL)")
        conn.execute(f"CREATE INDEX {table}_source_page ON {table} (source, page)")
        conn.execute(f"CREATE INDEX {table}_embedding_hnsw ON {table} USING hnsw (embedding vector_cosine_ops)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                            [(c.id, c.source, c.page, c.chunk_index, c.file_hash, c.text, json.dumps(c.metadata), v)
                             for c, v in zip(chunks, vecs)])
    _check_migrated(pg_uri)


# -- Milvus Lite -----------------------------------------------------------------------------------
def _milvus_v1(path: str, name: str = "chunks") -> None:
    from pymilvus import DataType, MilvusClient

    chunks, vecs = _old_data()
    client = MilvusClient(uri=path)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("text", DataType.VARCHAR, max_length=65535)
    schema.add_field("source", DataType.VARCHAR, max_length=2048)
    schema.add_field("page", DataType.INT64)
    schema.add_field("chunk_index", DataType.INT64)
    schema.add_field("file_hash", DataType.VARCHAR, max_length=128)
    schema.add_field("metadata", DataType.JSON)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="COSINE")
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
    client.upsert(name, [{"id": c.id, "vector": v.tolist(), "text": c.text, "source": c.source, "page": c.page,
                          "chunk_index": c.chunk_index, "file_hash": c.file_hash, "metadata": c.metadata}
                         for c, v in zip(chunks, vecs)])
    meta = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    meta.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
    meta.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
    meta.add_field("value", DataType.VARCHAR, max_length=65535)
    mi = client.prepare_index_params()
    mi.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="L2")
    client.create_collection(f"{name}_meta", schema=meta, index_params=mi, consistency_level="Strong")
    client.upsert(f"{name}_meta", [{"key": "info", "vector": [1.0, 0.0], "value": json.dumps(INFO)}])
    client.flush(name)
    client.flush(f"{name}_meta")
    client.close()


@pytest.fixture
def milvus_path(tmp_path):
    pytest.importorskip("pymilvus", reason="pip install 'ragtune[milvus]'")
    pytest.importorskip("milvus_lite", reason="Milvus Lite not installed: pip install 'ragtune[milvus]'")
    return str(tmp_path / "milvus.db")


def test_milvus_v1_collection_opens(milvus_path):
    _milvus_v1(milvus_path)
    _check_migrated(f"milvus://{milvus_path}")


def test_milvus_interrupted_migration_is_redone(milvus_path):
    """A half-written copy from a killed migration is dropped and the copy done again."""
    _milvus_v1(milvus_path)
    _milvus_v1(milvus_path, name="chunks_v2_migrating")  # stands in for a partial copy (wrong schema even)
    _check_migrated(f"milvus://{milvus_path}")


# -- Qdrant local mode -----------------------------------------------------------------------------
def test_qdrant_v1_collection_opens(tmp_path):
    pytest.importorskip("qdrant_client", reason="pip install 'ragtune[qdrant]'")
    from qdrant_client import QdrantClient, models

    from rag.stores.qdrant import point_id

    chunks, vecs = _old_data()
    path = tmp_path / "qdrant"
    client = QdrantClient(path=str(path))
    client.create_collection("chunks", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
                             metadata={"ragtune_info": INFO})
    client.upsert("chunks", [models.PointStruct(id=point_id(c.id), vector=v.tolist(), payload={
        "chunk_id": c.id, "text": c.text, "source": c.source, "page": c.page, "chunk_index": c.chunk_index,
        "file_hash": c.file_hash, "metadata": c.metadata}) for c, v in zip(chunks, vecs)], wait=True)
    client.close()
    _check_migrated(f"qdrant://{path}")


# -- the ingest manifest ---------------------------------------------------------------------------
def test_manifest_v1_opens_as_default(tmp_path):
    from ingest.manifest import Entry, Manifest

    db = tmp_path / "manifest.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("""CREATE TABLE files (
            path TEXT PRIMARY KEY, source TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, hash TEXT,
            fingerprint TEXT, chunks INTEGER, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
            updated REAL)""")
        con.execute("INSERT INTO files VALUES ('/d/a.pdf', 'a.pdf', 10, 5, 'h', 'fp', 3, 'done', '', 0)")
    m = Manifest(db)
    try:
        assert m.entries() == [Entry("/d/a.pdf", "a.pdf", 10, 5, "h", "fp", 3, "done", "", "default")]
        assert m.get("/d/a.pdf") is not None and m.get("/d/a.pdf", "hr") is None
        m.put(Entry("/d/a.pdf", "a.pdf", 10, 5, "h", "fp", 4, "done", "", "hr"))  # same file, other collection
        assert len(m.entries(None)) == 2 and m.entries("hr")[0].chunks == 4
        m.remove("/d/a.pdf", "hr")
        assert [e.collection for e in m.entries(None)] == ["default"]
    finally:
        m.close()
    assert Manifest(db).entries()[0].source == "a.pdf"  # reopening migrates nothing twice

