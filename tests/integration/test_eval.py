"""python -m eval end to end: the sample documents in a real embedded store, real MiniLM, no LLM
model (full runs use a fake LLM registered in rag.llms like a real backend)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eval.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
DATASET = ROOT / "data" / "eval" / "sample.jsonl"


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def test_every_reference_answer_is_on_its_page():
    """The sample reference set is checkable: each answer string occurs in the text of its page."""
    from eval.dataset import load_dataset
    from ingest.loaders import load
    from rag.settings import IngestSettings

    pages: dict[str, dict[int, str]] = {}
    for ex in load_dataset(DATASET):
        for ref in ex.sources:
            if ref.source not in pages:
                doc = load(SAMPLE / ref.source, IngestSettings())
                pages[ref.source] = {p.number: _norm(p.text) for p in doc.pages}
            assert ref.page in pages[ref.source], (ex.id, ref)
            for answer in ex.answers:
                assert _norm(answer) in pages[ref.source][ref.page], (ex.id, answer)


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    """data/sample ingested once into a private data dir (module-wide: ingest is the slow part)."""
    from rag import RAG
    from rag.settings import load_settings

    data_dir = tmp_path_factory.mktemp("eval-store")
    with RAG(settings=load_settings(env={}, overrides={"data_dir": str(data_dir)})) as rag:
        res = rag.ingest([SAMPLE])
    assert not res.failed and res.chunks > 10
    return data_dir


def test_retrieval_bakeoff_writes_report_and_passes_threshold(sample_store, tmp_path, capsys):
    out = tmp_path / "out"
    best = tmp_path / "ragtune.toml"
    rc = main([str(DATASET), "--data-dir", str(sample_store), "--retrieval", "dense", "--retrieval", "bm25",
               "--retrieval", "hybrid", "--out", str(out), "--json", "--fail-under", "hit@5=0.6",
               "--save-best", str(best), "--bootstrap", "200"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads(captured.out)
    assert [c["retrieval"] for c in summary["configs"]] == ["dense", "bm25", "hybrid"]
    for c in summary["configs"]:
        assert c["n"] == 24 and c["llm"] is None
        m = c["metrics"]
        assert m["hit@5"] >= 0.8 and 0 < m["hit@1"] <= m["hit@5"] <= m["hit@10"] and 0 < m["mrr"] <= 1
        assert m["answer_recall"] >= 0.8 and m["latency_s"] > 0
        lo, hi = c["ci"]["mrr"]
        assert lo <= m["mrr"] <= hi
    assert summary["fail_under"]["passed"] is True
    assert summary["best"]["retrieval"] in {"dense", "bm25", "hybrid"}
    assert f'mode = "{summary["best"]["retrieval"]}"' in best.read_text()
    for name in ("rows.jsonl", "summary.json", "report.md", "plot_metrics.png", "plot_hit_at_k.png",
                 "plot_latency.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "plot_metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 24 and {r["config"] for r in rows} == {"dense", "bm25", "hybrid"}
    assert "| dense |" in (out / "report.md").read_text()
    assert "best:" in captured.err


def test_empty_store_fails_the_threshold(tmp_path, capsys):
    rc = main([str(DATASET), "--data-dir", str(tmp_path / "empty"), "--retrieval", "bm25",
               "--fail-under", "hit@5=0.6", "--bootstrap", "50"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "is empty" in captured.err and "fail-under: hit@5 = 0.000 < 0.6 for 'bm25'" in captured.err


def test_broken_retriever_fails_the_threshold(sample_store, monkeypatch, capsys):
    """A retriever that ignores the question (always the same unrelated passages) must fail the gate."""
    from rag.retrieval import Retriever

    real = Retriever.retrieve

    def ignores_the_question(self, query, k=None, mode=None, **kw):
        return real(self, "lanyard kit spare parts Norway", k=k, mode=mode, **kw)

    monkeypatch.setattr(Retriever, "retrieve", ignores_the_question)
    rc = main([str(DATASET), "--data-dir", str(sample_store), "--retrieval", "hybrid", "--json",
               "--fail-under", "hit@5=0.6", "--bootstrap", "50"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 1 and summary["configs"][0]["metrics"]["hit@5"] < 0.6
    assert summary["fail_under"]["passed"] is False


class EchoLLM:
    """A fake LLM: answers with the passage sentence closest to the question and cites [1]."""

    context_window = 4096

    def __init__(self, rest, settings):
        self.name = f"echo:{rest}"

    def count_tokens(self, text):
        return len(text.split())

    def generate(self, messages, **opts):
        # Independent of the prompt's exact layout: the passage sentence sharing most words with the question.
        text = messages[-1]["content"]
        asked = re.findall(r"Question:\s*(.+)", text)
        q = set(re.findall(r"\w+", (asked[-1] if asked else text).lower()))
        sentences = [s for line in text.splitlines() for s in re.split(r"(?<=[.!?])\s+", line.strip())
                     if len(s.split()) >= 5 and not re.search(r"(?i)passage|question|answer", s)]
        if not sentences:
            return "I don't know."
        best = max(sentences, key=lambda s: len(q & set(re.findall(r"\w+", s.lower()))))
        return best + " [1]"

    def stream(self, messages, **opts):
        yield self.generate(messages, **opts)

    def complete(self, prompt, **opts):
        return self.generate([{"role": "user", "content": prompt}], **opts)


@pytest.fixture
def echo_llm():
    from rag import llms

    llms.register("echo", EchoLLM)
    yield "echo:test"
    llms.unregister("echo")


def test_full_run_with_a_registered_fake_llm(sample_store, echo_llm, capsys):
    # Goes through rag.RAG.ask -> rag.chain with the registered fake (eval/harness.py:_ask also falls
    # back to rag.chain.answer for a RAG whose ask is not implemented).
    rc = main([str(DATASET), "--data-dir", str(sample_store), "--llm", echo_llm, "--retrieval", "bm25",
               "--limit", "6", "--json", "--bootstrap", "50", "--fail-under", "groundedness_lexical=0.9"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    (cfg,) = json.loads(captured.out)["configs"]
    assert cfg["llm"] == echo_llm and cfg["name"] == "echo:test/bm25" and cfg["n"] == 6
    m = cfg["metrics"]
    for key in ("em", "f1", "rougeL", "semantic", "hit@1", "hit@5", "mrr", "recall@k", "answer_recall",
                "groundedness_lexical", "latency_s", "retrieval_s", "generation_s", "tokens_generated"):
        assert m[key] is not None, key
    assert m["groundedness_lexical"] == 1.0     # copied from the passages
    assert 0 < m["f1"] < 1 and 0 < m["semantic"] <= 1 and m["tokens_generated"] > 0


def test_mlflow_tracking_stays_under_the_data_dir(tmp_path):
    from eval.harness import ConfigResult, EvalConfig
    from eval.tracking import log_results
    from rag.settings import load_settings

    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path / "d")})
    res = ConfigResult(EvalConfig("bm25", "bm25"), [], {"hit@5": 0.75, "mrr": None}, {"hit@5": [0.5, 1.0]}, 1.0)
    (out := tmp_path / "out").mkdir()
    (out / "report.md").write_text("# r\n")
    (run_id,) = log_results([res], settings, dataset="x.jsonl", out=out)
    import mlflow

    run = mlflow.get_run(run_id)
    assert run.data.metrics == {"hit_at_5": 0.75, "hit_at_5_ci_lo": 0.5, "hit_at_5_ci_hi": 1.0}
    assert run.data.params["retrieval"] == "bm25" and run.data.params["llm"] == "none"
    assert (tmp_path / "d" / "mlflow.db").exists() and list((tmp_path / "d" / "mlartifacts").rglob("report.md"))
    assert not Path("mlruns").exists()
