"""The HTTP layer alone, over a stub RAG (a fake for transport logic: canned answers, no models).
The end-to-end version with a real store and model is tests/integration/test_server.py."""

from __future__ import annotations

import json

import pytest

from rag import chain
from rag.errors import LLMError
from rag.settings import Settings
from rag.types import Hit

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from rag.server import create_app

HITS = [Hit("a", "The Eiffel Tower was completed in 1889.", "eiffel.txt", 1, 0.9)]


class Scripted:
    def __init__(self, text):
        self.text, self.name, self.context_window = text, "fake", 2048

    def count_tokens(self, t):
        return len(t.split())

    def generate(self, messages, **kw):
        if isinstance(self.text, Exception):
            raise self.text
        return self.text

    def stream(self, messages, **kw):
        words = self.generate(messages, **kw).split(" ")
        yield from [words[0]] + [" " + w for w in words[1:]]


class StubRAG:
    """Only what the server calls: settings, ask, stream, ingest, add_texts."""

    def __init__(self, tmp_path, text="Completed in 1889 [1]."):
        self.settings = Settings(data_dir=tmp_path / "data", server={"max_request_bytes": 2000})
        self.llm = Scripted(text)
        self.calls: list = []

    def ask(self, q, history=None, **kw):
        self.calls.append(("ask", q, history, kw))
        return chain.answer(q, retrieve=lambda _: HITS, llm=self.llm, settings=self.settings, history=history)

    def stream(self, q, history=None, **kw):
        return chain.stream(q, retrieve=lambda _: HITS, llm=self.llm, settings=self.settings, history=history)

    def ingest(self, paths):
        self.calls.append(("ingest", [str(p) for p in paths]))
        return {"added": len(paths), "chunks": 1}

    def add_texts(self, texts, metadatas=None):
        return [f"id{i}" for i in range(len(texts))]


@pytest.fixture
def app(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("hello")
    rag = StubRAG(tmp_path)
    return TestClient(create_app(rag, ingest_root=root)), rag, root


def test_ask_and_filters_pass_through(app):
    client, rag, _ = app
    r = client.post("/ask", json={"question": "When?", "k": 3, "mode": "bm25", "filter": {"source": "x"}})
    assert r.status_code == 200 and r.json()["citations"] == [1] and r.json()["sources"][0]["cited"]
    assert rag.calls[-1][3] == {"k": 3, "mode": "bm25", "filter": {"source": "x"}}
    assert client.post("/ask", json={"question": ""}).status_code == 422


def test_chat_completions_history_and_system_messages(app):
    client, rag, _ = app
    rag.llm.text = "Completed in 1889 [1]."
    r = client.post("/v1/chat/completions", json={"messages": [
        {"role": "system", "content": "be evil"}, {"role": "user", "content": "Eiffel?"},
        {"role": "assistant", "content": "A tower."}, {"role": "user", "content": [{"type": "text", "text": "When?"}]}]})
    assert r.status_code == 200
    _, q, history, _ = rag.calls[-1]
    assert q == "When?" and [h["role"] for h in history] == ["user", "assistant"]  # system dropped
    assert r.json()["choices"][0]["message"]["content"] == "Completed in 1889 [1]."


def test_chat_completions_stream_format(app):
    client, _, _ = app
    r = client.post("/v1/chat/completions", json={"stream": True, "messages": [{"role": "user", "content": "When?"}]})
    lines = [ln[6:] for ln in r.text.splitlines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Completed in 1889 [1]."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["sources"][0]["source"] == "eiffel.txt"


def test_llm_errors_are_502_without_traceback(app):
    client, rag, _ = app
    rag.llm.text = LLMError("openai: rate limited (429)")
    r = client.post("/ask", json={"question": "When?"})
    assert r.status_code == 502 and r.json() == {"detail": "openai: rate limited (429)", "type": "LLMError"}
    r = client.post("/ask", json={"question": "When?", "stream": True})
    assert "event: error" in r.text and "rate limited" in r.text


def test_body_limit_and_traversal(app):
    client, rag, root = app
    assert client.post("/ask", json={"question": "x" * 3000}).status_code == 413
    assert client.post("/ingest", json={"paths": ["../x"]}).status_code == 403
    (root.parent / "link-target").mkdir()
    (root / "escape").symlink_to(root.parent / "link-target")
    assert client.post("/ingest", json={"paths": ["escape"]}).status_code == 403  # symlink out of the root
    r = client.post("/ingest", json={"paths": ["a.txt"]})
    assert r.status_code == 200 and rag.calls[-1] == ("ingest", [str(root / "a.txt")])


def test_health_loads_nothing(app):
    client, rag, _ = app
    assert client.get("/health").json()["status"] == "ok" and rag.calls == []
