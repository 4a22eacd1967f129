"""bench/report.py's cold-ingest targets (hand-made run figures: the rule that picks the baseline is
under test, not a timing)."""

from __future__ import annotations

from bench import report


def _run(seconds: float, tokens: int, truncated: int) -> dict:
    return {"pages_per_s": 422 / seconds, "seconds": seconds, "tokens": tokens, "truncated_tokens": truncated}


def test_equal_work_compares_only_baselines_that_embed_all_their_text():
    runs = {"ragtune": _run(50.0, 450_000, 0),
            "llamaindex": _run(45.0, 300_000, 177_000),            # faster, but drops 59% of its text
            "langchain": _run(80.0, 320_000, 34_000),              # drops 11%
            "llamaindex, equal work": _run(190.0, 300_000, 900)}   # 0.3%: counts as equal work
    rows = report.targets({"sections": {"ingest": {"standard": {"pages": 422, "runs": runs}}}})
    plain = next(r for r in rows if r[1].startswith("pages/s >= 1.5x the faster baseline (standard"))
    equal = next(r for r in rows if "at equal work" in r[1])
    assert plain[2] is False and plain[3].startswith("0.90x")      # against the faster, truncating LlamaIndex
    assert equal[2] is True and equal[3].startswith("3.80x vs llamaindex, equal work")


def test_no_equal_work_row_when_every_baseline_truncates():
    runs = {"ragtune": _run(50.0, 450_000, 0), "llamaindex": _run(45.0, 300_000, 177_000)}
    rows = report.targets({"sections": {"ingest": {"standard": {"pages": 422, "runs": runs}}}})
    assert not [r for r in rows if "at equal work" in r[1]]
