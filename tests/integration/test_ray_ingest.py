"""``--engine ray`` on a real two-node local Ray cluster (tests/ray_cluster.py) against ``--engine local``.

Same input -> the same chunk ids, texts, pages and (within float tolerance) vectors, in the
embedded store and in pgvector; the manifest still decides skip / replace / remove; a worker
node killed mid-ingest costs retries, not results. The corpus is data/sample plus a few small
PDFs of ../shared/data/pdfs (one of them encrypted, so one file fails alone) to keep CI time down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.__main__ import main as ingest_main
from tests.conftest import ROOT, SAMPLE, shared

pytestmark = pytest.mark.slow

PDFS = ("crazyones-pdfa.pdf", "google-doc-document.pdf", "habibi.pdf", "minimal-document.pdf", "multicolumn.pdf",
        "pdflatex-4-pages.pdf", "pdflatex-outline.pdf", "pdfkit.pdf", "libreoffice-writer-password.pdf")
ENCRYPTED = "libreoffice-writer-password.pdf"


@pytest.fixture
def corpus(tmp_path) -> Path:
    dst = tmp_path / "corpus"
    shutil.copytree(SAMPLE, dst)
    src = shared("pdfs", "sample-files")
    (dst / "pdfs").mkdir()
    for name in PDFS:
        shutil.copy(src / name, dst / "pdfs" / name)
    return dst


def index(uri: str) -> dict[str, tuple[str, int, str, np.ndarray]]:
    """chunk id -> (source, page, text, vector) of everything in a store."""
    from rag.stores import open_store

    store = open_store(uri)
    try:
        out = {}
        for chunks, vecs in store.iter_chunks():
            for c, v in zip(chunks, vecs):
                out[c.id] = (c.source, c.page, c.text, np.asarray(v, dtype=np.float32))
        return out
    finally:
        store.close()


def assert_same_index(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and len(a) > 20
    for cid, (src, page, text, vec) in a.items():
        assert b[cid][:3] == (src, page, text), cid
        cos = float(vec @ b[cid][3] / (np.linalg.norm(vec) * np.linalg.norm(b[cid][3])))
        assert cos > 0.999, (cid, cos)   # batch composition differs between engines: float rounding only


def ray_cli(paths, store: str, address: str, *extra: str, capsys) -> dict:
    rc = ingest_main([*map(str, paths), "--store", store, "--engine", "ray", "--ray-address", address, "--json",
                      *extra])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0, out
    return out


def test_ray_engine_matches_local_and_stays_incremental(ray_cluster, corpus, tmp_path, make_rag, capsys):
    local_uri, ray_uri = str(tmp_path / "local-index"), str(tmp_path / "ray-index")
    local = make_rag(store=local_uri).ingest([corpus]).summary()
    got = ray_cli([corpus], ray_uri, ray_cluster.address, capsys=capsys)

    nodes = got.pop("nodes")
    assert {k: v for k, v in got.items() if k != "seconds"} == {k: v for k, v in local.items() if k != "seconds"}
    assert [Path(f["path"]).name for f in got["failed"]] == [ENCRYPTED]   # one bad file fails alone
    assert sum(n["files"] for n in nodes) == got["added"] + len(got["failed"])
    assert sum(n["chunks"] for n in nodes) == got["chunks"] and all(n["node_id"] for n in nodes)
    assert_same_index(index(local_uri), index(ray_uri))

    # The manifest decides as it does locally: unchanged skipped, changed replaced, deleted removed.
    md = corpus / "acme_widget_faq.md"
    md.write_text(md.read_text() + "\n\n## New section\n\nThe Acme Widget glows blue when fully charged.\n")
    (corpus / "acme_support_notes.txt").unlink()
    local2 = make_rag(store=local_uri).ingest([corpus]).summary()
    got2 = ray_cli([corpus], ray_uri, ray_cluster.address, capsys=capsys)
    assert (got2["added"], got2["updated"], got2["removed"]) == (0, 1, 1)
    assert got2["unchanged"] == local2["unchanged"] == local["added"] - 2
    assert_same_index(index(local_uri), index(ray_uri))


def test_ray_engine_into_pgvector(ray_cluster, pg_table, corpus, tmp_path, make_rag):
    local_uri = str(tmp_path / "local-index")
    local = make_rag(store=local_uri).ingest([corpus]).summary()
    rag = make_rag(store=pg_table)   # the Python API's engine switch
    got = rag.ingest([corpus], engine="ray", ray_address=ray_cluster.address).summary()
    assert (got["added"], got["chunks"], len(got["failed"])) == (local["added"], local["chunks"], 1)
    assert_same_index(index(local_uri), index(pg_table))


def test_killed_worker_node_mid_ingest_still_gives_the_same_index(ray_cluster, corpus, tmp_path, make_rag):
    local_uri, ray_uri = str(tmp_path / "local-index"), str(tmp_path / "ray-index")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAGTUNE_DEBUG": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ingest", str(corpus), "--store", ray_uri, "--engine", "ray",
                             "--ray-address", ray_cluster.address, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not ray_cluster.worker_running("_parse_batch"):   # a parse task runs on the worker node
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no parse task reached the worker node"
            time.sleep(0.05)
        ray_cluster.kill_worker()
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        if ray_cluster.worker is None:
            ray_cluster.add_worker()   # the next test gets two nodes again
    assert proc.returncode == 0, err[-2000:]
    got = json.loads(out.strip().splitlines()[-1])
    print("KILLTEST", got["nodes"], got["seconds"])
    local = make_rag(store=local_uri).ingest([corpus]).summary()
    assert (got["added"], got["chunks"], len(got["failed"])) == (local["added"], local["chunks"], 1)
    assert_same_index(index(local_uri), index(ray_uri))
