"""Helpers for tests that run several ``python -m ingest`` processes ("machines") against one store:
the corpus they share, starting a run with its own data dir, collecting its ``--json`` summary, and the
chunk ids a store ends with (tests/integration/test_shared_manifest*.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SAMPLE, shared

PDFS = ("crazyones-pdfa.pdf", "google-doc-document.pdf", "habibi.pdf", "multicolumn.pdf", "pdflatex-4-pages.pdf",
        "pdflatex-outline.pdf", "pdfkit.pdf")


def make_corpus(tmp_path: Path) -> Path:
    """data/sample plus seven shared PDFs in one folder."""
    dst = tmp_path / "corpus"
    shutil.copytree(SAMPLE, dst)
    for name in PDFS:
        shutil.copy(shared("pdfs", "sample-files") / name, dst / name)
    return dst


def store_ids(uri: str) -> set[str]:
    from rag.stores import open_store

    store = open_store(uri)
    try:
        return {c.id for chunks, _ in store.iter_chunks() for c in chunks}
    finally:
        store.close()


def start_ingest(corpus: Path, uri: str, data_dir: Path) -> subprocess.Popen:
    """One machine: its own data dir (nothing local shared), its own process session (to kill it whole)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAGTUNE_DATA_DIR": str(data_dir)}
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "ingest", str(corpus), "--store", uri, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=data_dir.parent,
                            start_new_session=True)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def two_machines_at_once(corpus: Path, uri: str, tmp_path: Path, make_rag) -> None:
    """Two runs started together over the same folder and store: each file is ingested once, the store
    ends with a clean single ingest's chunk ids, and a third run finds everything done."""
    ref = make_rag(store=str(tmp_path / "ref")).ingest([corpus])
    a, b = start_ingest(corpus, uri, tmp_path / "a"), start_ingest(corpus, uri, tmp_path / "b")
    ra, rb = finish(a), finish(b)
    assert ra["added"] + rb["added"] == ref.added == len(PDFS) + len(list(SAMPLE.iterdir()))  # each file once
    assert ra["chunks"] + rb["chunks"] == ref.chunks
    assert store_ids(uri) == {c.id for chunks, _ in make_rag(store=str(tmp_path / "ref")).store.iter_chunks()
                              for c in chunks}
    # A third run from either machine finds everything done by the other.
    rc = finish(start_ingest(corpus, uri, tmp_path / "a"))
    assert (rc["added"], rc["updated"], rc["unchanged"], rc["chunks"]) == (0, 0, ref.added, 0)
