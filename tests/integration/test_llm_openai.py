"""The openai: backend for real, against llama-cpp-python's OpenAI-compatible server on loopback,
plus error mapping (401 / 404 / 429 / 500 / refused connection) against a tiny local HTTP server.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from rag.errors import LLMError
from rag.llms import open_llm
from rag.model_paths import packaged_smollm2_gguf
from rag.settings import Settings

pytestmark = pytest.mark.slow
pytest.importorskip("openai")

KEY = "sk-test-secret-key-1234567890"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast(**llm) -> Settings:
    return Settings(llm={"timeout_s": 5, "max_retries": 1, "max_new_tokens": 16, "context_window": 2048, **llm})


@pytest.fixture(scope="module")
def llama_server():
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] not installed")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_smollm2_gguf()),
                             "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "2048"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/models", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not start")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_generate_and_stream_against_llama_cpp_server(llama_server):
    llm = open_llm("openai:smollm2", fast(timeout_s=60), env={"OPENAI_BASE_URL": llama_server})
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    text = llm.generate(msgs)
    assert text and "paris" in text.lower()
    pieces = list(llm.stream(msgs))
    assert len(pieces) >= 2 and "".join(pieces).strip() == text  # greedy: same text both ways


def test_chain_over_openai_backend(llama_server):
    from rag import chain
    from rag.types import Hit

    # A real generation: allow for a loaded CI machine (the error-path tests keep short timeouts).
    slow_ok = fast(timeout_s=60)
    llm = open_llm("openai:smollm2", slow_ok, env={"OPENAI_BASE_URL": llama_server})
    hits = [Hit("a", "The Eiffel Tower was completed in 1889.", "eiffel.txt", 1, 0.9)]
    a = chain.answer("When was the Eiffel Tower completed?", retrieve=lambda q: hits, llm=llm, settings=slow_ok)
    assert "1889" in a.text and a.sources[0].source == "eiffel.txt"


def test_wrong_path_is_a_clear_404(llama_server):
    llm = open_llm("openai:smollm2", fast(), env={"OPENAI_BASE_URL": llama_server.replace("/v1", "/nope"),
                                                   "OPENAI_API_KEY": KEY})
    with pytest.raises(LLMError) as e:
        llm.generate([{"role": "user", "content": "hi"}])
    assert "not found (404)" in str(e.value) and "smollm2" in str(e.value) and KEY not in str(e.value)


def test_refused_connection_is_clear_and_fast():
    llm = open_llm("openai:m", fast(timeout_s=2, max_retries=0),
                   env={"OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1", "OPENAI_API_KEY": KEY})
    t = time.monotonic()
    with pytest.raises(LLMError, match="cannot connect"):
        list(llm.stream([{"role": "user", "content": "hi"}]))
    assert time.monotonic() - t < 10


class _Status(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the status the test asks for; counts requests (to see retries)."""

    status = 500
    hits = 0

    def do_POST(self):
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}", "type": "x"}}).encode()
        self.send_response(type(self).status)
        self.send_header("content-type", "application/json")
        self.send_header("retry-after-ms", "10")  # keep the SDK's backoff short in tests
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def status_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Status.hits = 0
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("status,expect,retried", [(429, "rate limited", True), (500, "server error 500", True),
                                                   (401, "authentication failed", False),
                                                   (404, "not found (404)", False)])
def test_error_mapping_retries_and_never_leaks_the_key(status_server, status, expect, retried):
    _srv, url = status_server
    _Status.status = status
    llm = open_llm("openai:m", fast(max_retries=2), env={"OPENAI_BASE_URL": url, "OPENAI_API_KEY": KEY})
    with pytest.raises(LLMError) as e:
        llm.generate([{"role": "user", "content": "hi"}])
    assert expect in str(e.value) and KEY not in str(e.value)
    assert e.value.__suppress_context__  # the SDK error (which quotes the key) is not chained
    assert _Status.hits == (3 if retried else 1)
