"""The local backends report why generation ended, as OpenAI names it: "length" when
``max_new_tokens`` cut the answer, "stop" when the model ended it. The packaged SmolLM2 through
llama.cpp and through transformers (the openai: backend: tests/integration/test_openai_clients.py).
"""

from __future__ import annotations

import pytest

from rag.llms import open_llm
from rag.model_paths import packaged_smollm2_gguf
from rag.settings import Settings

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module", params=["gguf", "hf"])
def llm(request, tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("finish-data"), llm={"threads": 1})
    if request.param == "gguf":
        pytest.importorskip("llama_cpp")
        return open_llm(f"gguf:{packaged_smollm2_gguf()}", settings)
    return open_llm("hf:smollm2", settings)


def _stream(llm, **opts) -> tuple[str, str | None]:
    pieces, it = [], llm.stream(MESSAGES, **opts)
    while True:
        try:
            pieces.append(next(it))
        except StopIteration as done:
            return "".join(pieces), done.value


def test_length_when_max_new_tokens_cuts_the_answer(llm):
    out = llm.generate(MESSAGES, max_new_tokens=2)
    assert out.finish_reason == "length" and out
    text, reason = _stream(llm, max_new_tokens=2)
    assert reason == "length" and text.strip() == out


def test_stop_when_the_model_ends_the_answer(llm):
    out = llm.generate(MESSAGES, max_new_tokens=64)
    assert out.finish_reason == "stop", out  # greedy: "Paris." and an end-of-turn token
    assert llm.count_tokens(out) < 64
    assert _stream(llm, max_new_tokens=64)[1] == "stop"
