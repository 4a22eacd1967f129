"""The bench code must keep running: its cheapest section on a tiny input, rendered into the report."""

from __future__ import annotations

import pytest

from bench import __main__ as bench_main
from bench import embedder_bench, report
from bench.retrieval_bench import ndcg_at, recall_at


def test_unknown_section_is_a_usage_error(capsys):
    assert bench_main.main(["--only", "nosuch"]) == 2
    assert "unknown section" in capsys.readouterr().err


def test_metrics():
    assert ndcg_at(["a", "b"], {"a"}) == pytest.approx(1.0)
    assert ndcg_at(["b", "a"], {"a"}) == pytest.approx(1 / 1.5849625, rel=1e-6)
    assert recall_at(["a", "x"], {"a", "b"}, 100) == 0.5


def test_embedder_section_renders(tmp_path, monkeypatch):
    from tests.conftest import shared

    shared("scifact", "corpus.jsonl")  # the section embeds SciFact texts: skip with a reason without them
    monkeypatch.setattr(embedder_bench, "RUNTIMES", {"torch bf16": ("torch", "bfloat16", "none", None),
                                                     "torch fp32": ("torch", "float32", "none", None)})
    section = embedder_bench.bench(n_texts=4, rounds=1, log=lambda m: None)
    assert section["runtimes"]["torch bf16"]["vs_torch_bf16"] == pytest.approx(1.0)
    assert section["runtimes"]["torch bf16"]["min_cosine_vs_fp32"] > 0.99
    assert section["cpu"]["model"]   # /proc/cpuinfo's model name goes into the report
    results = {"mode": "quick", "machine": bench_main.machine(), "sections": {"embedder": section},
               "errors": {}, "seconds": {"embedder": 1.0}}
    md = report.render(results)
    assert "Embedder runtimes" in md and "torch fp32" in md
    assert "section" in report.table(results)
