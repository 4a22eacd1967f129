"""copy_index: embedded store -> pgvector -> embedded again, no re-embedding, nothing lost."""

from __future__ import annotations

import numpy as np
import pytest

from rag.errors import IndexMismatchError
from rag.stores import open_store
from rag.stores.migrate import copy_index
from rag.types import Chunk, Filter

DIM = 24
N = 500


def _data() -> tuple[list[Chunk], np.ndarray]:
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(N, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    chunks = [Chunk(f"doc{i % 7}.pdf:{i}", f"text {i}", f"doc{i % 7}.pdf", i % 13, i, f"hash{i % 7}", {"n": i})
              for i in range(N)]
    return chunks, vecs


def _summary(store, q):
    return (store.count(), store.sources(), store.get_info(),
            [(h.id, round(h.score, 4)) for h in store.search(q, 10)],
            [(h.id, round(h.score, 4)) for h in store.search(q, 5, Filter(source="doc3.pdf", page_min=4))])


def test_embedded_to_pgvector_and_back(tmp_path, pg_uri):
    chunks, vecs = _data()
    info = {"embedder": "test/fake-24", "dim": DIM, "chunker": {"size": 500}, "schema": 1}
    src = open_store(str(tmp_path / "a"))
    src.set_info(info)
    src.upsert(chunks, vecs)
    q = vecs[42]
    want = _summary(src, q)

    pg = open_store(pg_uri)
    assert copy_index(src, pg, batch_size=128) == N
    assert _summary(pg, q) == want
    assert copy_index(src, pg, batch_size=128) == N  # again: upserts by id, no duplicates
    assert pg.count() == N

    back = open_store(str(tmp_path / "b"))
    assert copy_index(pg, back, batch_size=100) == N
    assert _summary(back, q) == want
    got = {c.id: (c, v) for batch, arr in back.iter_chunks() for c, v in zip(batch, arr)}
    for c, v in zip(chunks, vecs):
        assert got[c.id][0] == c
        np.testing.assert_allclose(got[c.id][1], v, atol=1e-6)
    for s in (src, pg, back):
        s.close()


def test_copy_refuses_a_different_embedder(tmp_path):
    src, dst = open_store(str(tmp_path / "a")), open_store(str(tmp_path / "b"))
    src.set_info({"embedder": "m1", "dim": 8})
    dst.set_info({"embedder": "m2", "dim": 8})
    with pytest.raises(IndexMismatchError, match="m2"):
        copy_index(src, dst)
    src.close()
    dst.close()
