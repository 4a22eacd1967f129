"""bench/model_table.py joins eval runs with the speed measured by `rag models bench` (hand-made
run folders: the table's arithmetic, not a model, is under test)."""

from __future__ import annotations

import json

from bench import model_table


def _run(folder, f1, latencies):
    folder.mkdir()
    cfg = {"name": "x", "llm": "qwen2.5-coder-0.5b", "n": len(latencies),
           "metrics": {"f1": f1, "em": 0.25, "cited": 0.9, "unsupported": 0.05},
           "ci": {"f1": [f1 - 0.05, f1 + 0.05]}}
    (folder / "summary.json").write_text(json.dumps({"configs": [cfg]}))
    (folder / "rows.jsonl").write_text("\n".join(json.dumps({"latency_s": x}) for x in latencies))
    return folder


def test_table_rows_join_quality_latency_and_measured_speed(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "measured.json").write_text(json.dumps(
        {"qwen2.5-coder-0.5b": {"tokens_per_s": 21.5, "ttft_s": 1.25, "peak_rss_mb": 812, "threads": 1}}))
    a = _run(tmp_path / "a", 0.4, [3.0, 1.0, 2.0, 10.0])
    b = _run(tmp_path / "b", 0.1, [5.0])
    out = tmp_path / "table.md"
    assert model_table.main([f"qwen2.5-coder-0.5b={a}", f"openai:qwen={b}", "--models-dir", str(models),
                             "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[2].startswith("| qwen2.5-coder-0.5b | 4 | 0.400 (0.350-0.450) | 0.250 | 0.900 | 0.050 | 2.5 | 10.0 | 21.5 | 1.25 | 812 |")
    assert lines[3].startswith("| openai:qwen | 1 | 0.100 (0.050-0.150) |") and lines[3].endswith("| 5.0 | 5.0 | - | - | - |")


def test_a_folder_without_a_summary_is_a_usage_error(tmp_path, capsys):
    assert model_table.main([f"m={tmp_path}"]) == 2
    assert "summary.json" in capsys.readouterr().err
