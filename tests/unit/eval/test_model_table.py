"""bench/model_table.py joins eval runs with the speed measured by `rag models bench` (hand-made
run folders shaped like the harness's rows.jsonl: the table's arithmetic, not a model, is under test)."""

from __future__ import annotations

import json

from bench import model_table


def _run(folder, rows, refs=None):
    """rows: (id, f1, latency_s, prediction); rows nest their scores under "metrics" as eval writes them."""
    folder.mkdir()
    lines = [json.dumps({"id": i, "prediction": pred, **({"references": refs} if refs else {}),
                         "metrics": {"f1": f1, "em": float(f1 == 1.0), "cited": 1.0, "attributed": 0.0,
                                     "unsupported": 0.0, "latency_s": lat}})
             for i, f1, lat, pred in rows]
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_table_rows_join_quality_latency_and_measured_speed(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "measured.json").write_text(json.dumps(
        {"qwen2.5-coder-0.5b": {"tokens_per_s": 21.5, "ttft_s": 1.25, "peak_rss_mb": 812, "threads": 1}}))
    a = _run(tmp_path / "a", [("q1", 1.0, 3.0, "140 grams [1]"), ("q2", 0.0, 1.0, "The widget is red. The widget is red.")])
    b = _run(tmp_path / "b", [("q2", 0.5, 9.0, "dup id: ignored"), ("q3", 0.5, 2.0, "x"), ("q4", 0.5, 10.0, "y")])
    c = _run(tmp_path / "c", [("q1", 0.25, 5.0, "One. Two.")])
    out = tmp_path / "table.md"
    assert model_table.main([f"qwen2.5-coder-0.5b={a},{b}", f"openai:qwen={c}", "--models-dir", str(models),
                             "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    cells = [x.strip() for x in lines[2].strip("|").split("|")]
    # pooled: q1 q2 from a, q3 q4 from b (b's q2 is a duplicate) -> F1 mean (1+0+0.5+0.5)/4
    assert cells[:2] == ["qwen2.5-coder-0.5b", "4"]
    assert cells[2].startswith("0.500 (") and cells[3].startswith("0.250 (")
    assert cells[7] == "1"                      # q2 repeats a sentence
    assert cells[8:] == ["2.5", "10.0", "21.5", "-", "1.25", "812"]   # p50 of 3,1,2,10; p90; measured speed
    other = [x.strip() for x in lines[3].strip("|").split("|")]
    assert other[:3] == ["openai:qwen", "1", "0.250 (0.250-0.250)"] and other[7] == "0"
    assert other[-3:] == ["-", "-", "-"]


def test_a_folder_without_rows_is_a_usage_error(tmp_path, capsys):
    assert model_table.main([f"m={tmp_path}"]) == 2
    assert "rows.jsonl" in capsys.readouterr().err


def test_common_keeps_the_questions_every_run_answered(tmp_path):
    a = _run(tmp_path / "a", [("q1", 1.0, 1.0, "a"), ("q2", 0.0, 1.0, "b"), ("q3", 0.0, 1.0, "c")])
    b = _run(tmp_path / "b", [("q1", 0.5, 2.0, "d"), ("q3", 0.5, 2.0, "e")])
    out = tmp_path / "t.md"
    assert model_table.main([f"x={a}", f"y={b}", "--common", "--models-dir", str(tmp_path), "--out", str(out)]) == 0
    x, y = ([c.strip() for c in line.strip("|").split("|")] for line in out.read_text().splitlines()[2:4])
    assert x[1] == y[1] == "2" and x[2].startswith("0.500") and y[2].startswith("0.500")


def test_em_and_f1_are_rescored_from_the_predictions(tmp_path):
    # A run written when "[1]" still counted against the answer: the table scores it again.
    a = _run(tmp_path / "a", [("q1", 0.667, 1.0, "gold [1]")], refs=["gold"])
    out = tmp_path / "t.md"
    assert model_table.main([f"x={a}", "--models-dir", str(tmp_path), "--out", str(out)]) == 0
    cells = [c.strip() for c in out.read_text().splitlines()[2].strip("|").split("|")]
    assert cells[2].startswith("1.000") and cells[3].startswith("1.000")
