"""One contract suite for every registered vector store backend.

Each test runs once per backend (ids = URI scheme): ``pytest tests/contract -k pgvector``.
The collection tests prove the collection filter runs inside the search: the wanted collection
sits far from the query while another one fills any unfiltered top-k, yet k rows come back.
Local backends run for real (embedded, PostgreSQL from scripts/pg.sh, Milvus Lite, Qdrant local
mode, LangChain's InMemoryVectorStore). Pinecone and Weaviate need a live service that cannot run
here; they are skipped unless PINECONE_API_KEY / WEAVIATE_URL are set, and then each test uses its
own namespace / collection and removes it afterwards.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from rag.stores import REGISTRY, VectorStore, open_store, scoped_id
from rag.types import Chunk, Filter

DIM = 16
N = 120               # small: Qdrant local mode commits once per point
SOURCES = ["a.pdf", "b.pdf", "c.md", "d.txt"]


def make_data(n: int = N, seed: int = 0) -> tuple[list[Chunk], np.ndarray]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    chunks = [Chunk(id=f"{SOURCES[i % 4]}#{i}", text=f"chunk number {i}", source=SOURCES[i % 4],
                    page=1 + (i // 4) % 10, chunk_index=i // 4, file_hash=f"h{i % 4}", metadata={"i": i})
              for i in range(n)]
    return chunks, vecs


def brute_force(chunks: list[Chunk], vecs: np.ndarray, q: np.ndarray, k: int, f: Filter | None = None) -> list[str]:
    keep = [i for i, c in enumerate(chunks) if f is None or f.matches(c.source, c.page)]
    scores = vecs[keep] @ q
    return [chunks[keep[j]].id for j in np.argsort(-scores)[:k]]


@dataclass
class Backend:
    uri: str
    cleanup: Callable[[], None] = lambda: None
    settle: Callable[[VectorStore, int], None] = lambda store, n: None  # eventually consistent services


def _drop(uri: str) -> Callable[[], None]:
    def go() -> None:
        s = open_store(uri)
        try:
            s.drop()
        finally:
            s.close()
    return go


def _wait_count(store: VectorStore, n: int, timeout: float = 60) -> None:
    end = time.time() + timeout
    while store.count() != n and time.time() < end:
        time.sleep(1)


def _backend(scheme: str, request: pytest.FixtureRequest, tmp_path) -> Backend:
    tag = uuid.uuid4().hex[:10]
    if scheme == "file":
        return Backend(str(tmp_path / "index"))
    if scheme == "pgvector":
        return Backend(request.getfixturevalue("pg_uri"))
    if scheme == "milvus":
        pytest.importorskip("pymilvus", reason="pip install 'ragtune[milvus]'")
        pytest.importorskip("milvus_lite", reason="Milvus Lite not installed: pip install 'ragtune[milvus]'")
        return Backend(f"milvus://{tmp_path}/milvus.db")
    if scheme == "qdrant":
        pytest.importorskip("qdrant_client", reason="pip install 'ragtune[qdrant]'")
        return Backend(f"qdrant://{tmp_path}/qdrant")
    if scheme == "langchain":
        pytest.importorskip("langchain_core", reason="pip install 'ragtune[langchain]'")
        return Backend(f"langchain://langchain_core.vectorstores:InMemoryVectorStore?persist_path={tmp_path}/lc.json")
    if scheme == "pinecone":
        if not os.environ.get("PINECONE_API_KEY"):
            pytest.skip("PINECONE_API_KEY not set: Pinecone is a hosted service with no local emulator; "
                        "export PINECONE_API_KEY (and optionally RAGTUNE_TEST_PINECONE_INDEX) to run it")
        pytest.importorskip("pinecone", reason="pip install 'ragtune[pinecone]'")
        index = os.environ.get("RAGTUNE_TEST_PINECONE_INDEX", "ragtune-test")
        uri = f"pinecone://{index}?namespace=test-{tag}"
        return Backend(uri, _drop(uri), _wait_count)
    if scheme == "weaviate":
        if not os.environ.get("WEAVIATE_URL"):
            pytest.skip("WEAVIATE_URL not set: no Weaviate server can run here (no Docker; embedded mode "
                        "downloads a binary); export WEAVIATE_URL (+ WEAVIATE_API_KEY for a cloud cluster)")
        pytest.importorskip("weaviate", reason="pip install 'ragtune[weaviate]'")
        uri = f"weaviate:///Test{tag}"
        return Backend(uri, _drop(uri), _wait_count)
    raise AssertionError(f"no contract fixture for registered scheme {scheme!r}: add one here")


@pytest.fixture(params=sorted(REGISTRY))
def backend(request, tmp_path):
    b = _backend(request.param, request, tmp_path)
    yield b
    b.cleanup()


@pytest.fixture
def store(backend):
    s = open_store(backend.uri)
    yield s
    s.close()


def fill(store: VectorStore, backend: Backend, batch: int = 50) -> tuple[list[Chunk], np.ndarray]:
    chunks, vecs = make_data()
    for i in range(0, N, batch):
        store.upsert(chunks[i:i + batch], vecs[i:i + batch])
    backend.settle(store, N)
    return chunks, vecs


# -- the contract ----------------------------------------------------------------------------------
def test_new_store_is_empty(store):
    assert store.count() == 0
    assert store.sources() == {}
    assert store.get_info() is None
    assert store.search(np.ones(DIM, dtype=np.float32) / 4, 5) == []
    assert "***" not in store.uri and isinstance(store.uri, str)


def test_upsert_is_idempotent_by_id(store, backend):
    chunks, vecs = fill(store, backend)
    assert store.count() == N
    changed = [Chunk(c.id, c.text + " (v2)", c.source, c.page, c.chunk_index, c.file_hash, c.metadata)
               for c in chunks[:60]]
    store.upsert(changed, vecs[:60])
    store.upsert(changed[:5] + changed[:5], np.vstack([vecs[:5], vecs[:5]]))  # duplicates inside one batch
    backend.settle(store, N)
    assert store.count() == N
    hit = store.search(vecs[7], 1)[0]
    assert hit.id == chunks[7].id and hit.text.endswith("(v2)")


def test_sources_counts(store, backend):
    fill(store, backend)
    assert store.sources() == {s: N // 4 for s in SOURCES}


def test_search_top_k_cosine(store, backend):
    chunks, vecs = fill(store, backend)
    for i in (0, 33, 119):
        hits = store.search(vecs[i], 5)
        assert len(hits) == 5
        assert hits[0].id == chunks[i].id
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert [h.id for h in hits] == brute_force(chunks, vecs, vecs[i], 5)
        h = hits[0]
        assert (h.source, h.page, h.chunk_index, h.metadata, h.text) == (
            chunks[i].source, chunks[i].page, chunks[i].chunk_index, chunks[i].metadata, chunks[i].text)


@pytest.mark.parametrize("flt", [
    Filter(source="b.pdf"),
    Filter(source=["a.pdf", "d.txt"]),
    Filter(page_min=3, page_max=5),
    Filter(source="c.md", page_min=8),
    Filter(page_max=2),
], ids=["source", "sources", "page-range", "source+page-min", "page-max"])
def test_search_with_filter(store, backend, flt):
    chunks, vecs = fill(store, backend)
    q = vecs[10]
    want = brute_force(chunks, vecs, q, 8, flt)
    hits = store.search(q, 8, flt)
    assert len(hits) == len(want) == 8  # filtered queries still return k rows
    assert all(flt.matches(h.source, h.page) for h in hits)
    assert [h.id for h in hits] == want


def test_filter_with_no_match_is_empty(store, backend):
    _, vecs = fill(store, backend)
    assert store.search(vecs[0], 5, Filter(source="nope.pdf")) == []
    assert store.search(vecs[0], 5, Filter(page_min=50)) == []


def test_delete_by_source(store, backend):
    _, vecs = fill(store, backend)
    assert store.delete_source("b.pdf") == N // 4
    backend.settle(store, N - N // 4)
    assert store.count() == N - N // 4
    assert "b.pdf" not in store.sources()
    assert all(h.source != "b.pdf" for h in store.search(vecs[1], 20))
    assert store.search(vecs[1], 5, Filter(source="b.pdf")) == []
    assert store.delete_source("b.pdf") == 0
    assert store.delete_source("never-there.pdf") == 0


def test_info_round_trip(store, backend):
    info = {"embedder": "test/fake-16", "dim": DIM, "chunker": {"size": 800, "overlap": 100}, "schema": 1}
    store.set_info(info)
    assert store.get_info() == info
    fill(store, backend)
    info2 = dict(info, chunker={"size": 400, "overlap": 50})
    store.set_info(info2)
    assert store.get_info() == info2


def test_iter_chunks_returns_everything(store, backend):
    chunks, vecs = fill(store, backend)
    seen: dict[str, tuple[Chunk, np.ndarray]] = {}
    for batch, arr in store.iter_chunks(batch_size=32):
        assert len(batch) == arr.shape[0] and 0 < len(batch) <= 32 and arr.shape[1] == DIM
        assert arr.dtype == np.float32
        seen.update({c.id: (c, v) for c, v in zip(batch, arr)})
    assert len(seen) == N
    for c, v in zip(chunks, vecs):
        got, gv = seen[c.id]
        assert (got.text, got.source, got.page, got.chunk_index, got.file_hash, got.metadata) == (
            c.text, c.source, c.page, c.chunk_index, c.file_hash, c.metadata)
        np.testing.assert_allclose(gv, v, atol=1e-5)


def test_reopen_persists(backend):
    info = {"embedder": "test/fake-16", "dim": DIM, "schema": 1}
    s = open_store(backend.uri)
    chunks, vecs = fill(s, backend)
    s.set_info(info)
    s.delete_source("d.txt")
    before = [(h.id, round(h.score, 4)) for h in s.search(vecs[5], 5)]
    s.close()

    s = open_store(backend.uri)
    try:
        backend.settle(s, N - N // 4)
        assert s.get_info() == info
        assert s.count() == N - N // 4
        assert s.sources() == {src: N // 4 for src in SOURCES if src != "d.txt"}
        assert [(h.id, round(h.score, 4)) for h in s.search(vecs[5], 5)] == before
        s.upsert(chunks[:3], vecs[:3])  # still writable after reopen
        backend.settle(s, N - N // 4)
        assert s.count() == N - N // 4
    finally:
        s.close()


# -- collections -----------------------------------------------------------------------------------
def make_collections(seed: int = 1) -> tuple[list[Chunk], np.ndarray, np.ndarray]:
    """'big': 90 chunks right around the query; 'small': 12 chunks far from it (they would never
    make an unfiltered top-k); 'default': 6 chunks. The same source name lives in every collection."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=DIM).astype(np.float32)
    q /= np.linalg.norm(q)
    sizes = {"big": 90, "small": 12, "default": 6}
    chunks, vecs = [], []
    for coll, n in sizes.items():
        for i in range(n):
            v = rng.normal(size=DIM).astype(np.float32)
            v = v / np.linalg.norm(v) + (3.0 * q if coll == "big" else -1.0 * q)
            vecs.append(v / np.linalg.norm(v))
            src = SOURCES[i % 2]
            chunks.append(Chunk(id=scoped_id(coll, f"{src}#{i}"), text=f"{coll} chunk {i}", source=src,
                                page=1 + i % 3, chunk_index=i, metadata={"i": i}, collection=coll))
    return chunks, np.vstack(vecs), q


def fill_collections(store: VectorStore, backend: Backend) -> tuple[list[Chunk], np.ndarray, np.ndarray]:
    chunks, vecs, q = make_collections()
    for i in range(0, len(chunks), 40):
        store.upsert(chunks[i:i + 40], vecs[i:i + 40])
    backend.settle(store, len(chunks))
    return chunks, vecs, q


def test_collection_filter_is_inside_the_search(store, backend):
    chunks, vecs, q = fill_collections(store, backend)
    assert all(h.collection == "big" for h in store.search(q, 12))  # 'big' dominates the unfiltered top-k
    for colls in (["small"], ["small", "default"], ["default"]):
        f = Filter(collections=colls)
        want = [c.id for c in brute_force_c(chunks, vecs, q, 10, f)]
        hits = store.search(q, 10, f)
        assert len(hits) == min(10, sum(c.collection in colls for c in chunks))  # k rows, not a cut top-k
        assert [h.id for h in hits] == want
        assert all(h.collection in colls for h in hits)


def test_collection_filter_combines_with_source_and_page(store, backend):
    chunks, vecs, q = fill_collections(store, backend)
    f = Filter(source="b.pdf", page_min=2, collections=["small"])
    hits = store.search(q, 20, f)
    want = brute_force_c(chunks, vecs, q, 20, f)
    assert [h.id for h in hits] == [c.id for c in want] and len(hits) == 4
    assert all(h.collection == "small" and h.source == "b.pdf" and h.page >= 2 for h in hits)


def test_no_cross_collection_leak(store, backend):
    chunks, vecs, _ = fill_collections(store, backend)
    big = [i for i, c in enumerate(chunks) if c.collection == "big"]
    for i in big[:3]:  # the exact vector of a 'big' chunk, asked within 'small': never returned
        hits = store.search(vecs[i], 50, Filter(collections=["small"]))
        assert hits and all(h.collection == "small" and h.text.startswith("small") for h in hits)
    assert store.search(vecs[big[0]], 5, Filter(collections=["nope"])) == []
    assert store.search(vecs[big[0]], 5, Filter(collections=[])) == []


def test_collection_counts(store, backend):
    assert store.collections() == {}
    fill_collections(store, backend)
    assert store.collections() == {"big": 90, "small": 12, "default": 6}
    assert store.count() == 108
    assert store.sources(["small"]) == {"a.pdf": 6, "b.pdf": 6}
    assert store.sources(["small", "default"]) == {"a.pdf": 9, "b.pdf": 9}
    assert store.sources() == {"a.pdf": 54, "b.pdf": 54}
    assert store.sources([]) == {}


def test_delete_per_collection(store, backend):
    _, _, q = fill_collections(store, backend)
    assert store.delete_source("a.pdf", "small") == 6
    backend.settle(store, 102)
    assert store.collections() == {"big": 90, "small": 6, "default": 6}
    assert store.sources(["small"]) == {"b.pdf": 6}
    assert store.sources(["big"]) == {"a.pdf": 45, "b.pdf": 45}  # the same file in another collection stays
    assert all(h.source == "b.pdf" for h in store.search(q, 20, Filter(collections=["small"])))
    assert store.delete_source("a.pdf", "small") == 0
    assert store.delete_source("a.pdf") == 3  # no collection named: the default one only
    backend.settle(store, 99)
    assert store.collections() == {"big": 90, "small": 6, "default": 3}


def test_collections_persist_across_reopen(backend):
    s = open_store(backend.uri)
    chunks, vecs, q = fill_collections(s, backend)
    before = [h.id for h in s.search(q, 5, Filter(collections=["small"]))]
    s.close()
    s = open_store(backend.uri)
    try:
        backend.settle(s, len(chunks))
        assert s.collections() == {"big": 90, "small": 12, "default": 6}
        hits = s.search(q, 5, Filter(collections=["small"]))
        assert [h.id for h in hits] == before and all(h.collection == "small" for h in hits)
        got = {c.id: c.collection for batch, _ in s.iter_chunks() for c in batch}
        assert got == {c.id: c.collection for c in chunks}
    finally:
        s.close()


def brute_force_c(chunks: list[Chunk], vecs: np.ndarray, q: np.ndarray, k: int, f: Filter) -> list[Chunk]:
    keep = [i for i, c in enumerate(chunks) if f.matches(c.source, c.page, c.collection)]
    scores = vecs[keep] @ q
    return [chunks[keep[j]] for j in np.argsort(-scores)[:k]]
