"""python -m eval: flag parsing, grids, the harness on a fake RAG (no models), fail-under and save-best."""

from __future__ import annotations

import argparse
import json
import tomllib
import typing

import pytest

from eval import harness
from eval.__main__ import _winner, build_parser, main, parse_threshold
from eval.dataset import Example, Reference
from rag.settings import Settings
from rag.types import Hit


def test_parse_threshold():
    assert parse_threshold("hit@5=0.6") == ("hit@5", 0.6)
    assert parse_threshold(" mrr = 0.25") == ("mrr", 0.25)
    assert parse_threshold("hit@10=1") == ("hit@10", 1.0)
    for bad, why in [("hit@5", "METRIC=VALUE"), ("=0.5", "METRIC=VALUE"), ("bleu=0.3", "unknown metric 'bleu'"),
                     ("f1=high", "must be a number")]:
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            parse_threshold(bad)


def test_bad_flags_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["x.jsonl", "--fail-under", "bleu=0.3"])
    assert e.value.code == 2 and "unknown metric 'bleu'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["x.jsonl", "--retrieval", "fuzzy"])
    assert e.value.code == 2


def test_missing_dataset_is_reported_without_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAGTUNE_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main([str(tmp_path / "nope.jsonl"), "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no such dataset file")


def test_build_configs_cross_product():
    cs = harness.build_configs(["default", "hf:org/model"], ["dense", "bm25", "dense"], k=5, default_mode="hybrid")
    assert [(c.name, c.llm, c.retrieval) for c in cs] == [
        ("default/dense", "", "dense"), ("default/bm25", "", "bm25"),
        ("model/dense", "hf:org/model", "dense"), ("model/bm25", "hf:org/model", "bm25")]
    only = harness.build_configs(None, None, k=3, default_mode="hybrid")
    assert [(c.name, c.llm, c.k, c.full) for c in only] == [("hybrid", None, 3, False)]


def test_grid_files(tmp_path):
    toml = tmp_path / "grid.toml"
    toml.write_text('retrieval = ["dense", "bm25"]\n[[configs]]\nname = "smol-k8"\nllm = "default"\n'
                    'retrieval = "hybrid"\nk = 8\n')
    cs = harness.load_grid(toml, k=5, default_mode="hybrid")
    assert [(c.name, c.llm, c.retrieval, c.k) for c in cs] == [
        ("dense", None, "dense", 5), ("bm25", None, "bm25", 5), ("smol-k8", "", "hybrid", 8)]
    yml = tmp_path / "grid.yaml"
    yml.write_text("llm: [default]\nretrieval: [bm25]\n")
    assert [c.name for c in harness.load_grid(yml, k=5, default_mode="hybrid")] == ["default/bm25"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[configs]]\nretrieval = "dense"\ntemperature = 1\n[[configs]]\nfoo = 1\n')
    from rag.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        harness.load_grid(bad, k=5, default_mode="hybrid")
    assert "configs[0]: unknown field(s) temperature" in str(e.value) and "configs[1]" in str(e.value)


# --- the harness over a fake RAG -----------------------------------------------------------------
class FakeAnswer:
    def __init__(self, text, sources):
        self.text, self.sources = text, sources
        self.timings = {"retrieve_s": 0.001, "generate_s": 0.5, "total_s": 0.501}
        self.tokens = {"completion": 7}


class FakeEmbedder:
    def embed(self, texts):
        import numpy as np

        return np.array([[len(t) % 7 + 1.0, t.count("a") + 1.0] for t in texts])


class FakeRAG:
    """Stands in for rag.RAG: fixed hits per question; ``ask`` answers with the first hit's text.

    The real ``RAG.ask`` (rag/api.py) is being wired by another engineer; the harness only relies
    on ``.text``, ``.sources`` (``.source``/``.page``/``.text``) and the optional ``.timings``/``.tokens``.
    """

    opened: typing.ClassVar[list] = []

    def __init__(self, settings=None, llm=None):
        self.settings, self.llm_spec = settings or Settings(), llm
        self.embedder = FakeEmbedder()
        self.llm = object()
        FakeRAG.opened.append(llm)

        class Store:
            def count(self):
                return 3

        self.store = Store()

    def retrieve(self, question, k=None, mode=None):
        good = Hit("1", "The answer is forty two.", "doc.pdf", 2, 0.9)
        bad = Hit("2", "Unrelated text.", "other.pdf", 1, 0.5)
        hits = [good, bad] if mode == "dense" else [bad, good]
        return hits[:k]

    def ask(self, question, k=None, mode=None):
        hits = self.retrieve(question, k=k, mode=mode)
        return FakeAnswer(hits[0].text, hits)

    def close(self):
        pass


EXAMPLES = [Example("q1", "What is the answer?", ["forty two"], [Reference("doc.pdf", 2)]),
            Example("q2", "And again?", ["forty two", "42"], [Reference("docs/doc.pdf", 0)])]


def test_evaluate_full_runs_on_a_fake_rag():
    FakeRAG.opened = []
    configs = harness.build_configs(["fake:a"], ["dense", "bm25"], k=5, default_mode="hybrid")
    res = harness.evaluate(EXAMPLES, configs, Settings(), rag_factory=FakeRAG, log=lambda s: None)
    assert FakeRAG.opened == ["fake:a"]                     # one RAG (one model load) per LLM spec
    dense, bm25 = res
    assert dense.metrics["hit@1"] == 1.0 and bm25.metrics["hit@1"] == 0.0 and bm25.metrics["mrr"] == 0.5
    assert dense.metrics["f1"] == pytest.approx(2 / 3)   # "answer is forty two": P = 1/2, R = 1
    assert bm25.metrics["em"] == 0.0 and bm25.metrics["groundedness_lexical"] == 1.0
    assert dense.metrics["latency_s"] == pytest.approx(0.501) and dense.metrics["tokens_generated"] == 7
    assert 0 < dense.metrics["semantic"] <= 1 and dense.metrics["answer_recall"] == 1.0
    assert dense.ci["hit@1"] == [1.0, 1.0]
    row = dense.rows[0]
    assert row["prediction"] == "The answer is forty two." and row["retrieved"][0]["source"] == "doc.pdf"


def test_ask_falls_back_to_the_chain_until_rag_ask_is_wired(monkeypatch):
    calls = {}

    class NotWired(FakeRAG):
        def ask(self, *a, **kw):
            raise NotImplementedError

    def fake_answer(question, *, retrieve, llm, settings):
        calls["hits"] = retrieve(question)
        return FakeAnswer("forty two", calls["hits"])

    import rag.chain

    monkeypatch.setattr(rag.chain, "answer", fake_answer)
    configs = harness.build_configs(["x"], ["dense"], k=1, default_mode="dense")
    (res,) = harness.evaluate(EXAMPLES[:1], configs, Settings(), rag_factory=NotWired, log=lambda s: None)
    assert res.metrics["em"] == 1.0 and len(calls["hits"]) == 1


def test_winner_reports_the_margin():
    configs = harness.build_configs(None, ["dense", "bm25"], k=5, default_mode="hybrid")
    res = harness.evaluate(EXAMPLES, configs, Settings(), rag_factory=FakeRAG, log=lambda s: None)
    best, how = _winner(res, "mrr", 200, 0)
    assert best.config.retrieval == "dense" and "vs 0.500 for 'bm25' (+0.500" in how


def test_main_fail_under_save_best_and_json(tmp_path, monkeypatch, capsys):
    """main() end to end with FakeRAG standing in for rag.RAG (no models, no store)."""
    import rag

    monkeypatch.setattr(rag, "RAG", FakeRAG)
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "ref.jsonl"
    data.write_text("\n".join(json.dumps({"id": e.id, "question": e.question, "answer": e.answers,
                                          "sources": [{"source": r.source, "page": r.page} for r in e.sources]})
                              for e in EXAMPLES))
    cfg = tmp_path / "ragtune.toml"
    cfg.write_text('[retrieval]\nk = 4\n')
    argv = [str(data), "--data-dir", str(tmp_path / "d"), "--retrieval", "bm25", "--retrieval", "dense",
            "--json", "--fail-under", "hit@1=0.9", "--save-best", str(cfg), "--out", str(tmp_path / "out")]
    assert main(argv) == 1                                     # bm25 has hit@1 = 0
    out = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in out["configs"]] == ["bm25", "dense"]
    assert out["configs"][1]["metrics"]["hit@1"] == 1.0 and out["configs"][1]["n"] == 2
    assert out["fail_under"]["failures"] == ["hit@1 = 0.000 < 0.9 for 'bm25'"]
    assert out["best"]["retrieval"] == "dense"
    saved = tomllib.loads(cfg.read_text())
    assert saved["retrieval"] == {"k": 4, "mode": "dense"}   # other settings kept
    for name in ("rows.jsonl", "summary.json", "report.md", "plot_metrics.png", "plot_hit_at_k.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert main([str(data), "--data-dir", str(tmp_path / "d"), "--retrieval", "dense",
                 "--fail-under", "hit@1=0.9", "--fail-under", "mrr=1"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["config", "n", "hit@1", "hit@3"]
