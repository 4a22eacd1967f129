"""Property test: the HTTP API never answers 5xx to a well-formed HTTP request, on any route.

Hypothesis draws requests for every route: mostly bodies of the right shape holding hostile
values (blank and whitespace-only text, NUL bytes, lone UTF-16 surrogates, NaN and Infinity,
huge and negative numbers, deep nesting, wrong types, unknown keys), sometimes any JSON at all or
bytes that are not JSON. The app is the real one (rag.server.create_app) over a real RAG on the
embedded store. Two fakes keep it fast, because only the transport and validation are under
test here: the HashEmbedder (tests/reliability/_helpers.py) stands in for MiniLM, and
``EchoLLM`` (tests/http_helpers.py), registered like a real backend, stands in for SmolLM2.
The real model behind the same server: tests/integration/test_server.py and
tests/integration/test_openai_clients.py.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rag.llms import register, unregister
from tests.http_helpers import EchoLLM
from tests.reliability._helpers import hash_rag

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from rag.server import create_app

    data = tmp_path_factory.mktemp("fuzz-data")
    root = tmp_path_factory.mktemp("fuzz-root")
    (root / "notes.txt").write_text("The lighthouse keeper logs every ship that passes the harbour.\n")
    # parse inline: a worker process per upload would make each example take seconds
    rag = hash_rag(data_dir=data, llm="echo:", ingest__workers=0)
    # U+2028 and U+0085 are line breaks to str.splitlines (and httpx's iter_lines): the echoed
    # passage puts them in every streamed answer
    rag.add_texts(["The Eiffel Tower was completed in 1889.", "Bananas are yellow\u2028fruits.\x85"],
                  metadatas=[{"source": "eiffel.txt", "page": 1}, {"source": "fruit.txt"}])
    register("echo", EchoLLM)  # after anything that can fail, so the finally below always pairs with it
    try:
        with TestClient(create_app(rag, ingest_root=root)) as c:
            yield c
    finally:
        rag.close()
        unregister("echo")


# --- values ----------------------------------------------------------------------------------

HOSTILE_TEXT = ["", " ", "\t\n  ", "\x00", "a\x00b", "\ud800", "x\udfffy", "x" * 5000, "../../etc/passwd",
                "/etc/passwd", "notes.txt", ".", "~", "<|im_start|>system", "[1][2]", "NaN", "é" * 50,
                "SELECT * FROM chunks; --", '"""', "\u2028", "\x85", "🦀"]
texts = st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_TEXT))
numbers = st.one_of(st.integers(-5, 300), st.integers(-(2**70), 2**70), st.just(10**30),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, 2, 8192, 8193, 1.5]))
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
any_json = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10)


def either(good):
    """The field's right type (often hostile within it), or any JSON value at all."""
    return st.one_of(good, good, any_json)


def body(required: dict, optional: dict):
    shaped = st.fixed_dictionaries({k: either(v) for k, v in required.items()},
                                   optional={**{k: either(v) for k, v in optional.items()},
                                             "unknown_field": any_json})
    return st.one_of(shaped, shaped, shaped, any_json)


roles = st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]), texts)
parts = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": either(texts)}), max_size=2)
turn = st.fixed_dictionaries({"role": roles, "content": st.one_of(texts, st.none(), parts)})
filters = st.fixed_dictionaries({}, optional={"source": either(texts | st.lists(texts, max_size=3)),
                                              "page_min": either(numbers), "page_max": either(numbers)})
metadata = st.dictionaries(st.sampled_from(["source", "page", "x"]), any_json, max_size=3)

ASK = body({"question": texts},
           {"k": numbers, "mode": st.sampled_from(["dense", "bm25", "hybrid", "mmr", "x"]), "filter": filters,
            "history": st.lists(turn, max_size=3), "stream": st.booleans(), "temperature": numbers,
            "max_new_tokens": numbers})
INGEST = body({}, {"paths": st.lists(texts, max_size=3), "texts": st.lists(texts, max_size=3),
                   "metadatas": st.lists(metadata, max_size=3)})
CHAT = body({"messages": st.lists(turn, max_size=4)},
            {"model": texts, "stream": st.booleans(), "n": numbers, "top_p": numbers, "max_tokens": numbers,
             "max_completion_tokens": numbers, "temperature": numbers,
             "stop": texts | st.lists(texts, max_size=5),
             "stream_options": st.fixed_dictionaries({}, optional={"include_usage": either(st.booleans())})})

# bodies a client would send (every field valid, though the text can hold anything), so the
# examples also reach retrieval, generation, streaming and the store, not only validation
words = st.text(min_size=1, max_size=60).filter(str.strip)
user_turn = st.fixed_dictionaries({"role": st.just("user"), "content": words})
any_turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": words})
valid_filter = st.fixed_dictionaries({}, optional={"source": st.sampled_from(["eiffel.txt", "x"]),
                                                   "page_min": st.integers(0, 5),
                                                   "page_max": st.integers(0, 5)})
VALID_ASK = st.fixed_dictionaries({"question": words}, optional={
    "k": st.integers(1, 100), "mode": st.sampled_from(["dense", "bm25", "hybrid", "mmr"]),
    "filter": valid_filter, "history": st.lists(any_turn, max_size=3), "stream": st.booleans(),
    "max_new_tokens": st.integers(1, 8192), "temperature": st.floats(0, 2)})
valid_metadata = st.fixed_dictionaries({}, optional={"source": words, "page": st.integers(0, 10**9),
                                                     "note": any_json})
VALID_INGEST = st.lists(words, min_size=1, max_size=3).flatmap(lambda ts: st.fixed_dictionaries(
    {"texts": st.just(ts)},
    optional={"metadatas": st.lists(valid_metadata, min_size=len(ts), max_size=len(ts))}))
VALID_CHAT = st.fixed_dictionaries(
    {"messages": st.tuples(st.lists(any_turn, max_size=3), user_turn).map(lambda t: [*t[0], t[1]])},
    optional={"model": words, "stream": st.booleans(), "n": st.integers(1, 3), "top_p": st.floats(0.01, 1),
              "max_tokens": st.integers(1, 8192), "temperature": st.floats(0, 2),
              "stop": st.lists(words, max_size=4),
              "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()})})
ASK, INGEST, CHAT = (st.one_of(valid, hostile) for valid, hostile in
                     ((VALID_ASK, ASK), (VALID_INGEST, INGEST), (VALID_CHAT, CHAT)))

# a body is sent as the JSON Python writes (NaN and Infinity literals, surrogates escaped), as
# nesting deeper than any parser's recursion limit, or as bytes that are not JSON at all
NESTED = st.integers(1, 3000).map(lambda n: '{"question": ' + "[" * n + "]" * n + "}")
NOT_JSON = st.one_of(st.binary(max_size=60), st.sampled_from([b"", b"{", b'{"question": "x"', b"\xff\xfe"]))


def payload(strategy):
    as_json = strategy.map(lambda b: json.dumps(b).encode())
    return st.one_of(as_json, as_json, NESTED.map(str.encode), NOT_JSON)


# --- checks ----------------------------------------------------------------------------------

def check(r) -> None:
    """No 5xx; a stream ends with its final event, and an error inside it is the client's fault."""
    event(f"HTTP {r.status_code}")  # the mix is shown by pytest --hypothesis-show-statistics
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code != 200 or not r.headers.get("content-type", "").startswith("text/event-stream"):
        return
    lines = r.text.splitlines()
    assert "data: [DONE]" in lines or "event: answer" in lines or "event: error" in lines, r.text[-500:]
    for i, line in enumerate(lines):
        if not line.startswith("data: {"):
            continue
        data = json.loads(line[6:])
        error = data.get("error") or (data if i and lines[i - 1] == "event: error" else None)
        if error:
            assert error["type"] in ("ConfigError", "DataError"), error


def post(client, path: str, content: bytes, **kw):
    return client.post(path, content=content, headers={"content-type": "application/json"}, **kw)


@FUZZ
@given(content=payload(ASK))
def test_ask_never_answers_5xx(client, content):
    check(post(client, "/ask", content))


@FUZZ
@given(content=payload(INGEST))
def test_ingest_never_answers_5xx(client, content):
    check(post(client, "/ingest", content))


@FUZZ
@given(content=payload(CHAT))
def test_chat_completions_never_answers_5xx(client, content):
    check(post(client, "/v1/chat/completions", content))


UPLOAD_NAMES = ["a.txt", "../../x.md", "x\x00.pdf", "a.csv", "b.html", "c.pdf", "d.docx", "%2e%2e"]


@settings(FUZZ, max_examples=40)  # each accepted upload is parsed and embedded: fewer examples
@given(filename=st.one_of(st.text(max_size=30), st.sampled_from(UPLOAD_NAMES)),
       content=st.binary(max_size=200))
def test_upload_never_answers_5xx(client, filename, content):
    check(client.post("/ingest/upload", params={"filename": filename}, content=content))


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
       path=st.sampled_from(["/health", "/v1/models", "/ask", "/ingest", "/ingest/upload",
                             "/v1/chat/completions", "/v1", "/nope", "/ask/", "//ask"]),
       query=st.dictionaries(st.sampled_from(["filename", "q", "x"]), st.text(max_size=10), max_size=2))
def test_any_method_on_any_path_never_answers_5xx(client, method, path, query):
    check(client.request(method, path, params=query))


@FUZZ
@given(content=payload(ASK))
def test_retrieve_never_answers_5xx(client, content):
    check(post(client, "/retrieve", content))


@pytest.mark.parametrize("path", ["/stats", "/collections"])
def test_index_info_routes_answer(client, path):
    r = client.get(path)  # no body to fuzz: they take none
    assert r.status_code == 200, r.text


KEY = body({"name": texts, "role": st.sampled_from(["reader", "writer", "admin", "x"])},
           {"collections": st.lists(texts, max_size=3), "expires": texts})


@settings(FUZZ, max_examples=60)
@given(content=payload(KEY), name=st.sampled_from(["alice", "x" * 300, "..", "%2e", "a b", "nope"]))
def test_key_routes_never_answer_5xx(client, content, name):
    # auth is off here: the routes refuse (403) whatever they get, and no key is ever made
    check(post(client, "/keys", content))
    check(client.get("/keys"))
    check(client.delete(f"/keys/{name.replace('/', '_')}"))


def test_every_route_is_fuzzed(client):
    """A route added later without a fuzz test above fails here."""
    fuzzed = {("POST", "/ask"), ("POST", "/ingest"), ("POST", "/v1/chat/completions"),
              ("POST", "/ingest/upload"), ("GET", "/health"), ("GET", "/v1/models"), ("POST", "/retrieve"),
              ("GET", "/stats"), ("GET", "/collections"), ("GET", "/keys"), ("POST", "/keys"),
              ("DELETE", "/keys/{name}")}
    docs = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
    routes = {(m, r.path) for r in client.app.routes for m in getattr(r, "methods", None) or ()
              if r.path not in docs and m != "HEAD"}
    assert routes == fuzzed
