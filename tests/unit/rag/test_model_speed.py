"""Measured model speed (rag/model_speed.py, ``python -m rag models bench``): a real SmolLM2 run through
llama.cpp (the packaged 98 MB model), recorded beside the models and shown by ``models list``."""

from __future__ import annotations

import json

import pytest

from rag import model_speed
from rag.__main__ import main


@pytest.fixture
def root(tmp_path, monkeypatch):
    path = tmp_path / "models"
    monkeypatch.setenv("RAGTUNE_MODELS_DIR", str(path))
    return path


def test_record_is_per_model_and_survives_a_corrupt_file(root):
    assert model_speed.load(root) == {}
    model_speed.record(root, "a", {"tokens_per_s": 1.0})
    model_speed.record(root, "b", {"tokens_per_s": 2.0})
    assert model_speed.load(root) == {"a": {"tokens_per_s": 1.0}, "b": {"tokens_per_s": 2.0}}
    assert [p.name for p in root.iterdir()] == [model_speed.FILE]  # no partial file left behind
    (root / model_speed.FILE).write_text("{not json")
    assert model_speed.load(root) == {}  # a damaged file means "not measured", never a crash in `list`


def test_each_round_starts_a_new_prompt():
    # Same prompt twice would let llama.cpp reuse the cached prefix and report a near-zero first-token time.
    assert model_speed.messages(1)[0] != model_speed.messages(2)[0]


@pytest.mark.slow
def test_bench_measures_the_packaged_model_and_list_shows_it(root, capsys):
    pytest.importorskip("llama_cpp")
    assert main(["models", "bench", "smollm2", "--max-tokens", "16", "--threads", "1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["name"] == "smollm2-135m"  # the alias is recorded under the catalogue name
    assert figures["tokens_per_s"] > 0 and figures["ttft_s"] > 0 and figures["peak_rss_mb"] > 50
    assert figures["threads"] == 1 and figures["tokens"] > 1 and figures["cpu"]
    assert 250 < figures["prompt_tokens"] < 600  # the five-passage prompt, counted by the model's tokenizer
    assert figures["prompt_tokens_per_s"] == pytest.approx(figures["prompt_tokens"] / figures["ttft_s"], rel=0.01)
    assert model_speed.load(root)["smollm2-135m"]["tokens_per_s"] == figures["tokens_per_s"]

    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert rows["smollm2-135m"]["measured"]["tokens_per_s"] == figures["tokens_per_s"]
    assert rows["qwen2.5-coder-1.5b"]["measured"] is None
    assert main(["models", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("smollm2-135m"))
    assert f"{figures['tokens_per_s']:.1f}" in line


def test_bench_of_an_unknown_name_is_one_clear_error(root, capsys):
    assert main(["models", "bench", "nosuch-model"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'nosuch-model'" in err and "models list" in err
    assert not (root / model_speed.FILE).exists()
