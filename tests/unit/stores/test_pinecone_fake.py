"""PineconeStore's own logic against an in-process FAKE of the Pinecone SDK.

Pinecone is a hosted service with no local emulator, so this fake stands in for the SDK surface
the store uses (has_index/create_index/describe_index/Index; upsert/query/fetch/list/delete/
describe_index_stats). It checks ragtune's side (record layout, batching, namespaces, the
reserved info namespace, filter dicts, paging) — not Pinecone's behaviour. The real service runs
in the contract suite when PINECONE_API_KEY is set.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pytest

from rag.stores.pinecone import META_NAMESPACE, PineconeStore, _matches
from rag.types import Chunk, Filter


class FakeIndex:
    def __init__(self):
        self.ns: dict[str, dict[str, NS]] = {}
        self.upsert_sizes: list[int] = []

    def upsert(self, *, vectors, namespace=""):
        assert len(vectors) <= 1000
        self.upsert_sizes.append(len(vectors))
        for v in vectors:
            assert v["id"].isascii() and any(v["values"])
            self.ns.setdefault(namespace, {})[v["id"]] = NS(values=list(v["values"]), metadata=dict(v["metadata"]))

    def query(self, *, vector, top_k, namespace="", filter=None, include_metadata=False):
        q = np.asarray(vector)
        recs = [(rid, r) for rid, r in self.ns.get(namespace, {}).items() if _matches(r.metadata, filter)]
        scored = sorted(((float(np.dot(q, r.values)), rid, r) for rid, r in recs), key=lambda t: -t[0])[:top_k]
        return NS(matches=[NS(id=rid, score=s, metadata=r.metadata) for s, rid, r in scored])

    def fetch(self, *, ids, namespace=""):
        d = self.ns.get(namespace, {})
        return NS(vectors={i: d[i] for i in ids if i in d})

    def list(self, *, namespace=""):
        ids = sorted(self.ns.get(namespace, {}))
        for i in range(0, len(ids), 7):  # small pages, like the real paginated list
            yield NS(vectors=[NS(id=x) for x in ids[i:i + 7]])

    def delete(self, *, ids=None, delete_all=False, namespace=""):
        d = self.ns.get(namespace, {})
        for i in (list(d) if delete_all else ids):
            d.pop(i, None)

    def describe_index_stats(self):
        return NS(namespaces={k: NS(vector_count=len(v)) for k, v in self.ns.items()})


class FakePinecone:
    def __init__(self):
        self.indexes: dict[str, tuple[int, FakeIndex]] = {}

    def has_index(self, name):
        return name in self.indexes

    def create_index(self, *, name, dimension, metric, spec):
        assert metric == "cosine"
        self.indexes[name] = (dimension, FakeIndex())

    def describe_index(self, name):
        return NS(dimension=self.indexes[name][0], metric="cosine")

    def Index(self, name):
        return self.indexes[name][1]


@pytest.fixture
def pc():
    pytest.importorskip("pinecone")
    return FakePinecone()


def _data(n=250, dim=8):
    rng = np.random.default_rng(3)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [Chunk(f"s{i % 3}#{i}", f"t{i}", f"s{i % 3}.pdf", i % 9, i, "h", {"i": i}) for i in range(n)], v


def test_round_trip_through_fake_sdk(pc):
    s = PineconeStore("pinecone://idx?namespace=team-a", client=pc)
    assert s.count() == 0 and s.get_info() is None and s.search(np.ones(8), 3) == []
    chunks, v = _data()
    s.upsert(chunks, v)
    s.upsert(chunks[:10], v[:10])
    idx = pc.Index("idx")
    assert max(idx.upsert_sizes) == 100 and set(idx.ns) == {"team-a"}
    assert s.count() == 250 and s.sources() == {"s0.pdf": 84, "s1.pdf": 83, "s2.pdf": 83}
    hits = s.search(v[5], 4, Filter(source=["s2.pdf", "s0.pdf"], page_min=2))
    assert hits[0].id == chunks[5].id and hits[0].metadata == {"i": 5}
    assert all(h.source in ("s2.pdf", "s0.pdf") and h.page >= 2 for h in hits) and len(hits) == 4
    s.set_info({"embedder": "e", "dim": 8})
    assert s.get_info() == {"embedder": "e", "dim": 8} and META_NAMESPACE in idx.ns
    assert s.count() == 250  # the info record is not counted
    assert s.delete_source("s1.pdf") == 83 and s.count() == 167
    got = [c for batch, arr in s.iter_chunks(50) for c in batch]
    assert len(got) == 167 and {c.source for c in got} == {"s0.pdf", "s2.pdf"}
    other = PineconeStore("pinecone://idx", client=pc)  # another namespace of the same index
    assert other.count() == 0 and other.get_info() is None


def test_non_ascii_chunk_ids_are_hashed_but_kept(pc):
    s = PineconeStore("pinecone://idx", client=pc)
    c = Chunk("résumé.pdf#0", "x", "résumé.pdf")
    s.upsert([c], np.ones((1, 4), dtype=np.float32) / 2)
    rid = next(iter(pc.Index("idx").ns[""]))
    assert rid.startswith("sha1-") and s.search(np.ones(4) / 2, 1)[0].id == "résumé.pdf#0"
