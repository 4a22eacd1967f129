"""A small run of bench/load_bench.py: 4 threads x 20+ requests to /ask over HTTP (uvicorn on
127.0.0.1, a subprocess) while a second process ingests into the same embedded store. The LLM is a
fake that answers at once (registered with rag.llms.register; /ask always generates) and the
embedder the HashEmbedder fake: what is under test is the server and the store under concurrent
reads and writes. Every response must be well-formed, name the asked-for file, and quote chunks
that exist in the final store.
"""

from __future__ import annotations

import pytest

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.slow


def test_concurrent_queries_while_another_process_ingests(tmp_path):
    from bench.load_bench import run

    fig = run(threads=4, requests=20, docs=20, extra_docs=40, fake=True, workdir=tmp_path, log=lambda m: None)
    assert fig["problems"] == []
    assert fig["requests"] >= 80 and fig["ok"] == fig["requests"]
    assert fig["during_ingest"] > 0, "no request overlapped the other process's writes"
    assert fig["files"] == 60
