"""The README demo's question, answered by the packaged SmolLM2 (the model that looped; the demo
itself now uses the default, the best installed model: see test_plain_script.py).

Regression: the answer was right ("140 grams") and then one sentence seven times until the token
limit. The chain now cuts an answer at its first repeated sentence, streamed or not.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow
QUESTION = "How much does the Acme Widget weigh?"


def _sentences(text: str) -> list[str]:
    return [" ".join(s.lower().split()) for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s.strip()) >= 12]


@pytest.fixture(scope="module")
def demo_rag(tmp_path_factory, embedder):
    from rag.api import RAG
    from rag.embedders.cache import CachedEmbedder

    data = tmp_path_factory.mktemp("demo")
    rag = RAG(data_dir=str(data), llm="smollm2", llm__threads=1)
    rag._embedder = CachedEmbedder(embedder, data / "cache")
    rag.ingest([SAMPLE])
    yield rag
    rag.close()


def test_demo_answer_is_right_and_repeats_no_sentence(demo_rag):
    answer = demo_rag.ask(QUESTION)
    assert "140 grams" in answer.text
    sentences = _sentences(answer.text)
    assert len(sentences) == len(set(sentences)), answer.text


def test_streamed_demo_answer_shows_no_repeated_sentence(demo_rag):
    streaming = demo_rag.stream(QUESTION)
    shown = "".join(streaming)
    assert "140 grams" in shown
    sentences = _sentences(shown)
    assert len(sentences) == len(set(sentences)), shown
    assert streaming.answer.text == shown.strip()
