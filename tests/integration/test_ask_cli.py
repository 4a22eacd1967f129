"""python -m rag ask / chat in-process over a real embedded index and the packaged SmolLM2 (llama.cpp)."""

from __future__ import annotations

import io
import json

import pytest

from rag.model_paths import packaged_smollm2_gguf

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from rag.api import RAG
    from rag.settings import Settings

    data = tmp_path_factory.mktemp("cli-data")
    with RAG(settings=Settings(data_dir=data)) as rag:
        rag.add_texts(["The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
                       "Bananas are yellow fruits rich in potassium."],
                      metadatas=[{"source": "eiffel.txt", "page": 3}, {"source": "fruit.txt"}])
    return data


@pytest.fixture
def cli_env(index, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray ragtune.toml
    for name in [n for n in __import__("os").environ if n.startswith("RAGTUNE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RAGTUNE_LLM__THREADS", "1")
    monkeypatch.setenv("RAGTUNE_LLM__MAX_NEW_TOKENS", "24")
    return ["--data-dir", str(index), "--llm", f"gguf:{packaged_smollm2_gguf()}", "--mode", "dense"]


def test_ask_json_prints_exactly_one_object(cli_env, capsys):
    from rag.__main__ import main

    assert main(["ask", "When was the Eiffel Tower completed?", "--json", "--k", "2", *cli_env]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    body = json.loads(out)
    assert "1889" in body["answer"]
    assert body["sources"][0] == {"source": "eiffel.txt", "page": 3, "score": body["sources"][0]["score"],
                                  "text": body["sources"][0]["text"], "cited": body["sources"][0]["cited"]}
    assert isinstance(body["citations"], list) and "flags" in body


def test_ask_streams_answer_then_numbered_sources(cli_env, capsys):
    from rag.__main__ import main

    assert main(["ask", "When was the Eiffel Tower completed?", "--k", "1", *cli_env]) == 0
    out = capsys.readouterr().out
    answer, _, sources = out.partition("\nSources:\n")
    assert "1889" in answer and sources.startswith("[1] eiffel.txt p.3 (score ")


def test_ask_bad_llm_spec_is_one_error_line(cli_env, capsys):
    from rag.__main__ import main

    assert main(["ask", "q", "--data-dir", cli_env[1], "--llm", "nosuch:model"]) == 2  # a usage error
    err = capsys.readouterr().err
    assert err.startswith("error: unknown LLM prefix 'nosuch'") and "Traceback" not in err


def test_chat_keeps_history_and_exits(cli_env, capsys):
    import argparse

    from rag.commands import chat

    parser = argparse.ArgumentParser()
    chat.add_arguments(parser)
    args = parser.parse_args(cli_env + ["--k", "1"])
    stdin = io.StringIO("Tell me about the Eiffel Tower.\nWhen was it completed?\n/sources\n/exit\nnever read\n")
    out = io.StringIO()
    assert chat.run(args, stdin=stdin, stdout=out) == 0
    text = out.getvalue()
    assert "[1] eiffel.txt p.3" in text and "never read" not in text
    assert "searching for:" in capsys.readouterr().err  # the follow-up was rewritten
