"""Several processes opening one fresh pgvector table at the same moment (two machines starting an
ingest together) all get a working store. PostgreSQL's CREATE ... IF NOT EXISTS is not safe against a
concurrent create of the same name: without the store's advisory lock one side failed with a unique
violation on the catalog (seen in CI as "duplicate key value violates unique constraint
pg_type_typname_nsp_index" from test_shared_manifest.py). Real PostgreSQL + pgvector on 127.0.0.1."""

from __future__ import annotations

import threading

import numpy as np

from rag.stores.pgvector import PgVectorStore
from rag.types import Chunk


def test_stores_opened_at_once_on_a_fresh_table_all_work(pg_table):
    n = 6
    start = threading.Barrier(n)
    errors: list[BaseException] = []
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, 8)).astype(np.float32)

    def machine(i: int) -> None:
        try:
            start.wait(timeout=30)
            store = PgVectorStore(pg_table)          # creates the meta table
            try:
                store.upsert([Chunk(f"c{i}", f"text {i}", f"f{i}.txt")], vecs[i:i + 1])   # creates the table
                store.build_index()                  # creates the HNSW index
            finally:
                store.close()
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=machine, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    store = PgVectorStore(pg_table)
    try:
        assert store.count() == n
    finally:
        store.close()
