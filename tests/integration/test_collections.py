"""Collections end to end: the real ingest pipeline, the packaged MiniLM, the embedded store, the
CLIs in-process. The LLM is a registered fake that quotes its first passage (the answer text is
not what is tested here; which passages reach it is)."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from ingest.__main__ import main as ingest_main
from rag import llms
from rag.errors import ConfigError


class QuoteLLM(llms.BaseLLM):
    """Answers with the first line of passage [1] and cites it."""

    name = "quote:x"
    context_window = 4096

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages, **opts):
        return "See [1]."

    def stream(self, messages, **opts):
        yield "See [1]."


@pytest.fixture
def quote_llm():
    llms.register("quote", lambda rest, settings: QuoteLLM(settings))
    yield "quote:x"
    llms.unregister("quote")


@pytest.fixture
def two_collections(make_rag, sample_dir, tmp_path):
    """The whole sample in 'hr'; one of its files, by the same path, also in 'handbook'."""
    rag = make_rag()
    hr = rag.ingest([sample_dir], collection="hr")
    faq = sample_dir / "acme_widget_faq.md"
    hb = rag.ingest([faq], collection="handbook")
    assert hr.added >= 5 and hb.added == 1 and not hr.failed
    assert hb.embedded == 0  # same texts: the embedding cache serves the second collection
    return rag, sample_dir, hr, hb


def test_stats_and_listing_per_collection(two_collections):
    rag, _, hr, hb = two_collections
    assert rag.collections() == {"handbook": hb.chunks, "hr": hr.chunks}
    st = rag.stats()
    assert st["collections"] == {"handbook": {"files": 1, "chunks": hb.chunks},
                                 "hr": {"files": hr.added, "chunks": hr.chunks}}
    assert st["chunks"] == hr.chunks + hb.chunks
    only = rag.stats(collections=["handbook", "nothing-here"])
    assert only["files"] == 1 and only["chunks"] == hb.chunks
    assert only["collections"] == {"handbook": {"files": 1, "chunks": hb.chunks},
                                   "nothing-here": {"files": 0, "chunks": 0}}


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid", "mmr"])
def test_every_mode_stays_inside_the_collection(two_collections, mode):
    rag, _, _, hb = two_collections
    k = min(4, hb.chunks)
    # a question about another file of the sample: hr holds it, handbook does not
    hits = rag.retrieve("What does the warranty cover and for how long?", k=k, mode=mode,
                        collections=["handbook"])
    assert hits and all(h.collection == "handbook" and h.source == "acme_widget_faq.md" for h in hits)
    if mode != "bm25":  # BM25 returns only passages sharing a word with the question
        assert len(hits) == k
    everywhere = rag.retrieve("What does the warranty cover and for how long?", k=8, mode=mode)
    assert {h.collection for h in everywhere} <= {"hr", "handbook"}
    assert rag.retrieve("warranty", k=3, mode=mode, collections=["legal"]) == []


def test_filter_and_collections_intersect(two_collections):
    rag, *_ = two_collections
    hits = rag.retrieve("widget", k=5, mode="dense", filter={"collections": ["hr", "handbook"]},
                        collections=["handbook"])
    assert hits and {h.collection for h in hits} == {"handbook"}
    assert rag.retrieve("widget", k=5, mode="dense", filter={"collections": ["hr"]}, collections=["handbook"]) == []
    with pytest.raises(ConfigError, match="list of names"):
        rag.retrieve("widget", collections="hr")
    with pytest.raises(ConfigError, match="collection"):
        rag.retrieve("widget", collections=["hr; DROP"])


def test_incremental_and_removal_are_per_collection(two_collections):
    rag, docs, hr, hb = two_collections
    again = rag.ingest([docs / "acme_widget_faq.md"], collection="handbook")
    assert (again.added, again.unchanged, again.removed) == (0, 1, 0)
    (docs / "acme_support_notes.txt").unlink()
    (docs / "acme_widget_faq.md").unlink()
    res = rag.ingest([docs], collection="hr")
    assert res.removed == 2
    assert "acme_widget_faq.md" not in rag.store.sources(["hr"])
    assert rag.store.sources(["handbook"]) == {"acme_widget_faq.md": hb.chunks}  # the other collection keeps it
    hits = rag.retrieve("widget", k=3, mode="hybrid", collections=["handbook"])
    assert hits and all(h.source == "acme_widget_faq.md" for h in hits)


def test_default_collection_behaves_as_before(make_rag, sample_dir):
    rag = make_rag()
    res = rag.ingest([sample_dir])
    assert rag.collections() == {"default": res.chunks}
    ids = rag.add_texts(["Kiwis are small brown fruits."], metadatas=[{"source": "kiwi"}], ids=["kiwi-1"])
    assert ids == ["kiwi-1"]  # the default collection keeps given ids
    hr_ids = rag.add_texts(["Kiwis are small brown fruits."], metadatas=[{"source": "kiwi"}], ids=["kiwi-1"],
                           collection="hr")
    assert hr_ids != ids and rag.collections() == {"default": res.chunks + 1, "hr": 1}
    hit = rag.retrieve("kiwi fruit", k=1, mode="dense", collections=["hr"])[0]
    assert (hit.id, hit.collection) == (hr_ids[0], "hr")


def test_clis_take_collections(make_rag, sample_dir, tmp_path, capsys, quote_llm, monkeypatch):
    data = tmp_path / ".ragtune"
    only = tmp_path / "legal"
    only.mkdir()
    shutil.copy(sample_dir / "acme_widget_faq.md", only)
    assert ingest_main([str(only), "--collection", "legal", "--json", "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 1
    assert ingest_main([str(sample_dir), "--json", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert ingest_main([str(only), "--collection", "no way", "--data-dir", str(data)]) == 2
    assert "collection" in capsys.readouterr().err

    from rag.__main__ import main as rag_main

    assert rag_main(["stats", "--json", "--data-dir", str(data)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats["collections"]) == {"default", "legal"} and stats["collections"]["legal"]["files"] == 1
    assert rag_main(["stats", "--data-dir", str(data)]) == 0
    assert "  legal: 1 files, " in capsys.readouterr().out

    assert rag_main(["ask", "How do I charge the widget?", "--collection", "legal", "--json", "--k", "3",
                     "--mode", "hybrid", "--llm", quote_llm, "--data-dir", str(data)]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["sources"] and all(s["source"] == "acme_widget_faq.md" for s in body["sources"])
    assert rag_main(["ask", "How do I charge the widget?", "--collection", "legal", "--collection", "default",
                     "--k", "3", "--llm", quote_llm, "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "Sources:" in out
    assert rag_main(["ask", "How do I charge the widget?", "--collection", "hr", "--json",
                     "--llm", quote_llm, "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["sources"] == []

    others = [p.name for p in sample_dir.iterdir() if p.name != "acme_widget_faq.md"]
    monkeypatch.setattr("sys.stdin", io.StringIO("What powers does Congress have?\n/sources\n"))
    assert rag_main(["chat", "--collection", "legal", "--k", "3", "--llm", quote_llm, "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "acme_widget_faq.md" in out and not any(name in out for name in others)
