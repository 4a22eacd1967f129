"""Two machines sharing incremental state through Milvus (ingest/manifests/milvus.py).

A Milvus Lite file admits one process, so "machines" (processes with separate data dirs) meet on
milvus-lite's gRPC server, started by ``scripts/milvus.sh`` (tests/milvus_server.py). The claim
protocol is checked directly (two clients racing over the same files, a run killed with SIGKILL,
an expired lease from another host), then end to end with ``python -m ingest`` processes: started
together they end with exactly a clean ingest's chunks; one killed mid-run is completed by the next.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import milvus_server as _server
from tests.conftest import ROOT
from tests.ingest_processes import finish as _done
from tests.ingest_processes import make_corpus, two_machines_at_once
from tests.ingest_processes import start_ingest as _start
from tests.ingest_processes import store_ids as _ids

pytest.importorskip("pymilvus", reason="pip install 'ragtune[milvus]'")
pytest.importorskip("milvus_lite", reason="Milvus Lite not installed: pip install 'ragtune[milvus]'")

milvus_server, milvus_uri = _server.milvus_server, _server.milvus_uri  # the server fixtures (tests/milvus_server.py)



def _entry(path: str, digest: str = "h1", status: str = "pending", collection: str = "default", chunks: int = 0):
    from ingest.manifest import Entry

    return Entry(path, Path(path).name, 10, 20, digest, "fp1", chunks, status, collection=collection)


def _manifest(uri: str):
    from ingest.manifests.milvus import MilvusManifest

    return MilvusManifest(uri)


# -- the manifest alone ---------------------------------------------------------------------------
def test_milvus_stores_get_a_manifest_in_the_store(tmp_path):
    from ingest.manifests import open_manifest
    from ingest.manifests.milvus import MilvusManifest

    uri = f"milvus://{tmp_path}/m.db?collection=docs"
    m = open_manifest(uri, tmp_path / "data")
    try:
        assert isinstance(m, MilvusManifest) and m.name == "docs_manifest"
        m.put(_entry("/c/a.txt"))
        m.put(_entry("/c/a.txt", status="done", chunks=3))       # replaces, keyed by (collection, path)
        m.put(_entry("/c/b.txt", status="failed"))
        m.put(_entry("/c/a.txt", collection="other"))
        assert m.get("/c/a.txt").status == "done" and m.get("/c/a.txt").chunks == 3
        assert m.get("/c/a.txt", "other").status == "pending" and m.get("/c/none.txt") is None
        assert sorted(e.path for e in m.entries()) == ["/c/a.txt", "/c/b.txt"]
        assert len(m.entries(None)) == 3
        m.remove("/c/a.txt", "other")
        assert m.get("/c/a.txt", "other") is None and m.get("/c/a.txt") is not None
    finally:
        m.close()
    assert not (tmp_path / "data" / "manifests").exists()  # nothing local
    again = open_manifest(uri, tmp_path / "data")
    try:
        assert sorted((e.path, e.status) for e in again.entries()) == [("/c/a.txt", "done"), ("/c/b.txt", "failed")]
    finally:
        again.close()


def test_two_clients_racing_claim_each_file_exactly_once(milvus_uri):
    a, b = _manifest(milvus_uri), _manifest(milvus_uri)
    paths = [f"/c/f{i}.txt" for i in range(40)]
    won: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def run(m, name):
        start.wait()
        for p in paths:  # the same order in both, as two ingests of the same folder
            verdict, _ = m.claim(_entry(p))
            if verdict == "ok":
                won[name].append(p)

    threads = [threading.Thread(target=run, args=(a, "a")), threading.Thread(target=run, args=(b, "b"))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not set(won["a"]) & set(won["b"])
        assert sorted(won["a"] + won["b"]) == sorted(paths)
    finally:
        a.close()
        b.close()


def test_done_and_failed_rows_end_a_claim(milvus_uri):
    a, b = _manifest(milvus_uri), _manifest(milvus_uri)
    try:
        assert a.claim(_entry("/c/x.txt")) == ("ok", None)
        assert a.claim(_entry("/c/x.txt")) == ("ok", None)            # already mine
        assert b.claim(_entry("/c/x.txt"))[0] == "busy"
        a.put(_entry("/c/x.txt", status="pending"))
        assert b.claim(_entry("/c/x.txt"))[0] == "busy"               # pending keeps the claim
        a.put(_entry("/c/x.txt", status="done", chunks=4))
        verdict, row = b.claim(_entry("/c/x.txt"))
        assert verdict == "done" and row.chunks == 4                  # same bytes: stored by the other run
        assert b.claim(_entry("/c/x.txt", digest="h2")) == ("ok", None)  # changed bytes: redo
        b.put(_entry("/c/x.txt", digest="h2", status="failed"))
        assert a.claim(_entry("/c/x.txt", digest="h2")) == ("ok", None)  # a failed row holds no claim
        a.release()
        assert b.claim(_entry("/c/x.txt", digest="h2")) == ("ok", None)  # released
    finally:
        a.close()
        b.close()


def test_a_run_killed_with_sigkill_frees_its_claims(milvus_uri):
    code = ("import sys, time; from ingest.manifest import Entry; from ingest.manifests.milvus import MilvusManifest; "
            "m = MilvusManifest(sys.argv[1]); "
            "print(m.claim(Entry('/c/k.txt', 'k.txt', 10, 20, 'h1', 'fp1', 0, 'pending'))[0], flush=True); "
            "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, milvus_uri], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    m = _manifest(milvus_uri)
    try:
        assert proc.stdout.readline().strip() == "ok"
        assert m.claim(_entry("/c/k.txt"))[0] == "busy"   # a live run on this host holds it
        proc.kill()
        proc.wait(timeout=30)
        assert m.claim(_entry("/c/k.txt")) == ("ok", None)  # its pid is gone: the claim is dead
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        m.close()


def test_a_claim_from_another_host_holds_until_its_lease_expires(milvus_uri, monkeypatch):
    import ingest.manifests.milvus as mm

    far, near = _manifest(milvus_uri), _manifest(milvus_uri)
    far.owner = "another-host:4242:cafe"  # no pid to check there: only its heartbeat tells
    try:
        assert far.claim(_entry("/c/r.txt")) == ("ok", None)
        assert near.claim(_entry("/c/r.txt"))[0] == "busy"
        with monkeypatch.context() as mp:
            mp.setattr(mm, "LEASE_S", -1.0)  # its next heartbeat is already expired: a machine gone silent
            far._heartbeat()
        assert near.claim(_entry("/c/r.txt")) == ("ok", None)
    finally:
        far.close()
        near.close()


# -- two `python -m ingest` processes ------------------------------------------------------------------
@pytest.fixture
def corpus(tmp_path) -> Path:
    return make_corpus(tmp_path)


def _ref_ids(make_rag, ref: Path) -> set[str]:
    return {c.id for chunks, _ in make_rag(store=str(ref)).store.iter_chunks() for c in chunks}


@pytest.mark.slow
def test_two_machines_at_once_end_with_one_clean_ingest(milvus_uri, corpus, tmp_path, make_rag):
    two_machines_at_once(corpus, milvus_uri, tmp_path, make_rag)


@pytest.mark.slow
def test_a_machine_killed_mid_run_is_completed_by_the_next_run(milvus_uri, corpus, tmp_path, make_rag):
    from pymilvus import MilvusClient

    from rag.stores.milvus import parse_uri

    ref = make_rag(store=str(tmp_path / "ref")).ingest([corpus])
    a = _start(corpus, milvus_uri, tmp_path / "a")
    cfg = parse_uri(milvus_uri)
    client = MilvusClient(uri=cfg["client_uri"], timeout=10)
    name = f"{cfg['collection']}_manifest"
    deadline = time.monotonic() + 300
    try:
        while True:  # kill once some files are done and others are not
            assert a.poll() is None, a.communicate()
            assert time.monotonic() < deadline, "the first run never stored a file"
            done = 0
            if client.has_collection(name):
                rows = client.query(name, filter='kind == "entry" and status == "done"', output_fields=["count(*)"])
                done = int(rows[0]["count(*)"]) if rows else 0
            if done >= 2:
                break
            time.sleep(0.1)
    finally:
        client.close()
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(timeout=30)
    assert done < ref.added

    rb = _done(_start(corpus, milvus_uri, tmp_path / "b"))   # the other machine, right away
    assert rb["added"] + rb["updated"] >= ref.added - done and rb["unchanged"] >= done
    assert rb["added"] + rb["updated"] + rb["unchanged"] == ref.added
    assert _ids(milvus_uri) == _ref_ids(make_rag, tmp_path / "ref")
