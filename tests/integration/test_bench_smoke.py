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
    monkeypatch.setattr(embedder_bench, "CONFIGS", {"float32 b64 (old default)": ("float32", 64, 0),
                                                    "bfloat16 b64": ("bfloat16", 64, 0)})
    section = embedder_bench.bench(n_texts=4, rounds=1, log=lambda m: None)
    assert section["configs"]["float32 b64 (old default)"]["speedup"] == pytest.approx(1.0)
    assert section["configs"]["bfloat16 b64"]["min_cosine_vs_fp32"] > 0.99
    assert "int8 dynamic (torch) b32" in section["configs"]  # measured beside, on its own model copy
    results = {"mode": "quick", "machine": bench_main.machine(), "sections": {"embedder": section},
               "errors": {}, "seconds": {"embedder": 1.0}}
    md = report.render(results)
    assert "Embedder options" in md and "bfloat16 b64" in md
    assert "section" in report.table(results)
