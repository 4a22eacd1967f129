"""Unreachable servers fail fast with a StoreError that names the URI without its password.

Two kinds of unreachable, both real sockets on 127.0.0.1: a closed port (refused at once) and a
port that accepts connections but never answers (only the client's timeouts end the wait).
"""

from __future__ import annotations

import socket
import time

import pytest

from rag.errors import StoreError
from rag.stores import open_store

SECRET = "hunter2-s3cret"


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def silent_port():
    """A listening socket that accepts but never replies (a hung server)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


def _fails_fast(uri: str, limit: float = 10.0) -> str:
    t = time.monotonic()
    with pytest.raises(StoreError) as err:
        open_store(uri)
    assert time.monotonic() - t < limit
    msg = str(err.value)
    assert SECRET not in msg
    return msg


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_pgvector_unreachable(kind, request):
    pytest.importorskip("psycopg")
    port = _closed_port() if kind == "refused" else request.getfixturevalue("silent_port")
    msg = _fails_fast(f"pgvector://alice:{SECRET}@127.0.0.1:{port}/db?table=chunks")
    assert f"pgvector://alice@127.0.0.1:{port}/db" in msg
    assert "scripts/pg.sh start" in msg  # says what to check


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_qdrant_unreachable(kind, request, monkeypatch):
    pytest.importorskip("qdrant_client")
    monkeypatch.setenv("QDRANT_API_KEY", SECRET)
    port = _closed_port() if kind == "refused" else request.getfixturevalue("silent_port")
    msg = _fails_fast(f"qdrant://127.0.0.1:{port}")
    assert f"qdrant://127.0.0.1:{port}" in msg and "running and reachable" in msg


def test_milvus_unreachable():
    pytest.importorskip("pymilvus")
    port = _closed_port()
    msg = _fails_fast(f"milvus://bob:{SECRET}@127.0.0.1:{port}?timeout=3", limit=15)
    assert f"milvus://127.0.0.1:{port}" in msg


def test_weaviate_unreachable():
    pytest.importorskip("weaviate")
    port = _closed_port()
    msg = _fails_fast(f"weaviate://127.0.0.1:{port}/Docs?timeout=3")
    assert f"weaviate://127.0.0.1:{port}/Docs" in msg


def test_pinecone_without_key_says_which_variable(monkeypatch):
    pytest.importorskip("pinecone")
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    assert "PINECONE_API_KEY" in _fails_fast("pinecone://my-index")
