"""The collection filter at the sizes where each index really searches (not an exact scan of a
few rows): the embedded store's FAISS ID-selector path (flat and IVF) and pgvector's HNSW scan.
The wanted collection lies far from the query while another fills every unfiltered top-k."""

from __future__ import annotations

import numpy as np
import pytest

from rag.stores import open_store, scoped_id
from rag.stores.embedded import EmbeddedStore
from rag.types import Chunk, Filter

DIM = 16


def _data(n_near: int, n_far: int, seed: int = 5) -> tuple[list[Chunk], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=DIM).astype(np.float32)
    q /= np.linalg.norm(q)
    vecs = rng.normal(size=(n_near + n_far, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs[:n_near] += 3 * q
    vecs[n_near:] -= q
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    chunks = [Chunk(scoped_id(c, f"s{i}"), f"t{i}", f"s{i % 50}.pdf", 1, i, collection=c)
              for i, c in enumerate(["near"] * n_near + ["far"] * n_far)]
    return chunks, vecs, q


def _want(chunks, vecs, q, k, coll):
    idx = [i for i, c in enumerate(chunks) if c.collection == coll]
    return [chunks[idx[j]].id for j in np.argsort(-(vecs[idx] @ q))[:k]]


@pytest.mark.parametrize("ivf", [False, True], ids=["flat", "ivf"])
def test_embedded_faiss_selector_path(tmp_path, ivf):
    # 'far' holds more rows than the exact-scan limit (20,000), so FAISS ranks them with a selector
    chunks, vecs, q = _data(3000, 21000)
    s = EmbeddedStore(str(tmp_path / "idx"), ivf_threshold=10_000 if ivf else 50_000)
    try:
        for i in range(0, len(chunks), 5000):
            s.upsert(chunks[i:i + 5000], vecs[i:i + 5000])
        assert {h.collection for h in s.search(q, 20)} == {"near"}
        hits = s.search(q, 20, Filter(collections=["far"]))
        assert s._index_kind == ("ivf" if ivf else "flat")
        assert len(hits) == 20 and {h.collection for h in hits} == {"far"}
        want = _want(chunks, vecs, q, 20, "far")
        if ivf:  # approximate (random 16-d data is hard for IVF): k rows, never another collection
            assert len(set(want) & {h.id for h in hits}) >= 12
        else:
            assert [h.id for h in hits] == want
    finally:
        s.close()


def test_pgvector_hnsw_scan_keeps_going_until_k_match(pg_uri):
    chunks, vecs, q = _data(4000, 60)
    s = open_store(pg_uri)
    try:
        s.upsert(chunks, vecs)
        s.build_index()
        # make the planner use the HNSW index (not a scan of the 60 rows through the btree, which it
        # rightly prefers for a small collection): without the btree and seq scans only HNSW is left
        s.conn.execute(f"DROP INDEX {s.table}_collection_source")
        s.conn.execute("SET enable_seqscan = off")
        s.conn.execute("SET enable_bitmapscan = off")
        s.conn.execute("SET hnsw.ef_search = 40")
        plan = "\n".join(r[0] for r in s.conn.execute(
            f"EXPLAIN SELECT id FROM {s.table} WHERE collection = ANY(%s) ORDER BY embedding <=> %s LIMIT 10",
            (["far"], q)).fetchall())
        hits = s.search(q, 10, Filter(collections=["far"]))
        assert len(hits) == 10 and {h.collection for h in hits} == {"far"}, plan
        assert len(set(_want(chunks, vecs, q, 10, "far")) & {h.id for h in hits}) >= 9
        assert "embedding_hnsw" in plan, plan
    finally:
        s.close()
