"""/v1/chat/completions through the clients people use, against a real uvicorn server on
127.0.0.1: the official ``openai`` package, LangChain's ``ChatOpenAI`` and ragtune's own
``openai:`` backend.

Behind the server: a real RAG on the embedded store with the HashEmbedder in place of MiniLM,
and the fake ``EchoLLM`` (tests/http_helpers.py: repeats its prompt cut to ``max_tokens`` words,
reporting "length" or "stop" as the real backends do) so the protocol tests are exact and fast.
One test puts the packaged SmolLM2 (llama.cpp) behind the same server.
"""

from __future__ import annotations

import json

import pytest

from rag.llms import open_llm, register, unregister
from rag.settings import Settings
from tests.http_helpers import EchoLLM, serving
from tests.reliability._helpers import hash_rag

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

QUESTION = "When was the Eiffel Tower completed?"
USER = [{"role": "user", "content": QUESTION}]


def _rag(tmp_path_factory, **kw):
    rag = hash_rag(data_dir=tmp_path_factory.mktemp("clients-data"), **kw)
    rag.add_texts(["The Eiffel Tower in Paris was completed in 1889.", "Bananas are yellow fruits."],
                  metadatas=[{"source": "eiffel.txt", "page": 3}, {"source": "fruit.txt"}])
    return rag


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    from rag.server import create_app

    rag = _rag(tmp_path_factory, llm="echo:")
    register("echo", EchoLLM)  # after anything that can fail, so the finally below always pairs with it
    try:
        with serving(create_app(rag)) as base:
            yield base
    finally:
        rag.close()
        unregister("echo")


@pytest.fixture
def oc(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)


def _stream(oc, **kw) -> list:
    return list(oc.chat.completions.create(model="ragtune", messages=USER, stream=True, **kw))


# --- finish_reason ---------------------------------------------------------------------------

def test_finish_reason_is_length_when_max_tokens_cut_the_answer(oc):
    cut = oc.chat.completions.create(model="ragtune", messages=USER, max_tokens=3)
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == "As passage [1]"
    whole = oc.chat.completions.create(model="ragtune", messages=USER, max_tokens=200)
    assert whole.choices[0].finish_reason == "stop" and QUESTION in whole.choices[0].message.content
    # max_completion_tokens (the newer name) counts the same
    assert oc.chat.completions.create(model="ragtune", messages=USER,
                                      max_completion_tokens=2).choices[0].finish_reason == "length"


def test_streamed_finish_reason_is_length_when_max_tokens_cut_the_answer(oc):
    chunks = _stream(oc, max_tokens=3)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == "length" and set(reasons[:-1]) == {None}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "As passage [1]"
    assert _stream(oc, max_tokens=200)[-1].choices[0].finish_reason == "stop"


# --- stream_options.include_usage ------------------------------------------------------------

def test_include_usage_adds_a_last_chunk_with_usage_and_no_choices(oc):
    chunks = _stream(oc, max_tokens=3, stream_options={"include_usage": True})
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 3  # EchoLLM: one word, one token
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None and c.choices for c in body)  # as OpenAI: "usage": null until the end
    assert body[-1].choices[0].finish_reason == "length"
    # without it, no usage chunk at all
    plain = _stream(oc, max_tokens=3)
    assert all(c.choices and c.usage is None for c in plain)


# --- n ---------------------------------------------------------------------------------------

def test_n_above_1_is_refused_naming_n(oc):
    with pytest.raises(openai.BadRequestError) as e:
        oc.chat.completions.create(model="ragtune", messages=USER, n=3)
    assert e.value.status_code == 400 and e.value.param == "n" and "n=1" in e.value.message
    with pytest.raises(openai.BadRequestError):
        _stream(oc, n=2)
    assert len(oc.chat.completions.create(model="ragtune", messages=USER, n=1).choices) == 1


def test_bad_values_reach_the_openai_client_with_the_field_named(oc):
    with pytest.raises(openai.UnprocessableEntityError) as e:
        oc.chat.completions.create(model="ragtune", messages=[{"role": "user", "content": "   "}])
    assert e.value.param == "messages" and "non-blank" in e.value.message
    with pytest.raises(openai.UnprocessableEntityError) as e:
        oc.chat.completions.create(model="ragtune", messages=USER, temperature=7)
    assert e.value.param == "temperature"


# --- sources ---------------------------------------------------------------------------------

def test_raw_openai_client_sees_sources_in_model_extra(oc):
    r = oc.chat.completions.create(model="ragtune", messages=USER)
    sources = r.model_extra["sources"]
    assert sources[0]["source"] == "eiffel.txt" and sources[0]["page"] == 3 and sources[0]["text"]
    assert 1 in r.model_extra["citations"] and sources[0]["cited"]
    final = _stream(oc)[-1]
    assert final.model_extra["sources"][0]["source"] == "eiffel.txt"


def test_langchain_chat_openai_sees_sources_in_response_metadata(url):
    """ChatOpenAI drops unknown body fields; the headers are what it passes on, when asked to
    (``include_response_headers=True``), into ``response_metadata["headers"]``."""
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(base_url=url + "/v1", api_key="x", model="ragtune", max_retries=0,
                                      include_response_headers=True)
    msg = llm.invoke(QUESTION)
    assert "1889" in msg.content
    sources = json.loads(msg.response_metadata["headers"]["x-ragtune-sources"])
    assert sources[0] == {"n": 1, "source": "eiffel.txt", "page": 3, "score": sources[0]["score"],
                          "id": sources[0]["id"], "cited": True, "implicit": False}
    assert [s["source"] for s in sources] == ["eiffel.txt", "fruit.txt"]
    assert msg.response_metadata["finish_reason"] == "stop"
    assert llm.invoke(QUESTION, max_tokens=2).response_metadata["finish_reason"] == "length"

    streamed = None
    for chunk in llm.stream(QUESTION):
        streamed = chunk if streamed is None else streamed + chunk
    # a stream's headers leave before the answer exists: which passages were cited is not known yet
    assert [s["source"] for s in json.loads(streamed.response_metadata["headers"]["x-ragtune-sources"])] == \
        ["eiffel.txt", "fruit.txt"]
    assert streamed.content == msg.content


# --- ragtune's own openai: backend -----------------------------------------------------------

def test_openai_backend_reports_the_servers_finish_reason(url, tmp_path):
    llm = open_llm("openai:ragtune", Settings(data_dir=tmp_path, llm={"max_retries": 0}),
                   env={"OPENAI_BASE_URL": url + "/v1", "OPENAI_API_KEY": "x"})
    assert llm.generate(USER, max_new_tokens=2).finish_reason == "length"
    assert llm.generate(USER, max_new_tokens=200).finish_reason == "stop"
    pieces = llm.stream(USER, max_new_tokens=2)
    with pytest.raises(StopIteration) as done:
        while True:
            next(pieces)
    assert done.value.value == "length"


# --- the real model --------------------------------------------------------------------------

@pytest.mark.slow
def test_real_model_behind_the_server_reports_length(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from rag.model_paths import packaged_smollm2_gguf
    from rag.server import create_app

    rag = _rag(tmp_path_factory, llm=f"gguf:{packaged_smollm2_gguf()}", llm__threads=1)
    try:
        with serving(create_app(rag)) as base:
            oc = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
            cut = oc.chat.completions.create(model="ragtune", messages=USER, max_tokens=2)
            assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.content
            whole = oc.chat.completions.create(model="ragtune", messages=USER, max_tokens=200)
            assert whole.choices[0].finish_reason == "stop", whole.choices[0].message.content
            assert whole.usage.completion_tokens < 200
            chunks = _stream(oc, max_tokens=2, stream_options={"include_usage": True})
            assert chunks[-2].choices[0].finish_reason == "length"
            assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    finally:
        rag.close()
