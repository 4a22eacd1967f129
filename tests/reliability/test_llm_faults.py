"""The openai: backend against a misbehaving server on loopback: what
tests/integration/test_llm_openai.py (429 / 500 / 401 / 404 / refused) does not cover: a server
that closes the connection, one that is too slow (the timeout), and one that dies mid-stream.
Each ends in one LLMError naming the server, never the key, within a bounded time.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from rag.errors import LLMError
from rag.llms import open_llm
from rag.settings import Settings

pytest.importorskip("openai")

KEY = "sk-test-PLANTED-fault-key-0987654321"


class RawServer:
    """A TCP server on 127.0.0.1 that runs ``behaviour(conn)`` for each connection; counts them."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.hits = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.settimeout(10)
            _read_request(conn)
            self.behaviour(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def _read_request(conn) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        part = conn.recv(65536)
        if not part:
            return data
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head


def close_at_once(conn, stop):
    conn.shutdown(socket.SHUT_RDWR)


def half_response(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"id\": \"x\", ")


def too_slow(conn, stop):
    stop.wait(30)


def dies_mid_stream(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    for word in ("Hello", " there"):
        event = "data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                       "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
        payload = (event + "\n\n").encode()
        conn.sendall(b"%x\r\n%s\r\n" % (len(payload), payload))
    time.sleep(0.1)
    conn.shutdown(socket.SHUT_RDWR)  # no terminating chunk, no [DONE]


def _llm(url, timeout_s=2.0, retries=1):
    settings = Settings(llm={"timeout_s": timeout_s, "max_retries": retries, "max_new_tokens": 8})
    return open_llm("openai:m", settings, env={"OPENAI_BASE_URL": url, "OPENAI_API_KEY": KEY})


@pytest.fixture
def server(request):
    srv = RawServer(request.param)
    yield srv
    srv.close()


MSGS = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("server", [close_at_once, half_response], indirect=True)
@pytest.mark.parametrize("streamed", [False, True])
def test_connection_closed_by_the_server(server, streamed):
    llm = _llm(server.url, retries=1)
    t0 = time.monotonic()
    with pytest.raises(LLMError) as e:
        list(llm.stream(MSGS)) if streamed else llm.generate(MSGS)
    msg = str(e.value)
    assert msg.startswith("openai: ") and "127.0.0.1" in msg and KEY not in msg
    # one retry after a dropped connection; a stream whose 200 headers arrived is not retried
    assert server.hits == 2 or (streamed and server.behaviour is half_response and server.hits == 1)
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("server", [too_slow], indirect=True)
def test_slow_server_hits_the_timeout(server):
    llm = _llm(server.url, timeout_s=1.0, retries=1)
    t0 = time.monotonic()
    with pytest.raises(LLMError, match=r"no answer from http://127\.0\.0\.1:\d+/v1 within") as e:
        llm.generate(MSGS)
    took = time.monotonic() - t0
    assert KEY not in str(e.value) and server.hits == 2
    assert 2.0 <= took < 20, f"two 1 s attempts plus backoff, took {took:.1f} s"


@pytest.mark.parametrize("server", [dies_mid_stream], indirect=True)
def test_server_dying_mid_stream_is_an_llm_error(server):
    llm = _llm(server.url, retries=0)
    got: list[str] = []
    with pytest.raises(LLMError) as e:
        got.extend(llm.stream(MSGS))
    assert got == ["Hello", " there"]  # what arrived before the drop was delivered
    assert "127.0.0.1" in str(e.value) and KEY not in str(e.value)
