"""A Milvus server on 127.0.0.1 for tests that need two processes on one Milvus index.

A Milvus Lite file (``milvus://./x.db``) is locked by the one process that opens it (a second one
fails with "Open local milvus failed"), so tests of several processes run milvus-lite's own gRPC
server instead: ``scripts/milvus.sh start PORT`` on a free port with its data in a private temp
folder, once per session, stopped at the end. Each test gets its own collection. Skips (with the
reason) when milvus-lite is not installed or the server does not start.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "milvus.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def milvus_server():
    """``milvus://127.0.0.1:PORT`` of a server running for the session."""
    for mod in ("pymilvus", "milvus_lite"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"Milvus tests need {mod}: pip install 'ragtune[milvus]'")
    tmp = tempfile.mkdtemp(prefix="rt-milvus-", dir="/tmp")
    port = str(_free_port())
    env = {**os.environ, "RAGTUNE_MILVUS_DIR": tmp}

    def script(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), cmd, port], capture_output=True, text=True, env=env,
                              timeout=120, check=False)

    run = script("start")
    if run.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"scripts/milvus.sh start {port} failed: {run.stderr[-300:]}")
    try:
        yield run.stdout.strip()
    finally:
        script("stop")
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def milvus_uri(milvus_server):
    """A store URI on the session's server with a collection of its own, dropped after the test
    (chunks, info and the ingest manifest)."""
    uri = f"{milvus_server}?collection=t_{uuid.uuid4().hex[:10]}"
    yield uri
    from rag.stores.milvus import MilvusStore

    store = MilvusStore(uri)
    try:
        store.drop()
    finally:
        store.close()
