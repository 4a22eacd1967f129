"""Ingest end to end: real parser, real MiniLM, real embedded store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.__main__ import main as ingest_main
from rag.commands.stats import run as _  # noqa: F401 - import check for the stats command
from tests.conftest import ROOT, shared


def test_sample_then_incremental(make_rag, sample_dir):
    from ingest.loaders import supported

    n = sum(1 for p in sample_dir.iterdir() if supported(p))
    rag = make_rag()
    first = rag.ingest([sample_dir])
    assert first.added == n >= 5 and not first.failed and first.chunks > 10
    assert first.embedded == first.chunks          # every chunk embedded once
    stats = rag.stats()
    assert stats["files"] == n and stats["chunks"] == first.chunks and stats["dim"] == 384

    again = rag.ingest([sample_dir])
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, n, 0)
    assert again.embedded == 0 and again.chunks == 0   # nothing parsed or embedded

    # change one file: only it is redone, and its unchanged chunks come from the cache
    md = sample_dir / "acme_widget_faq.md"
    md.write_text(md.read_text() + "\n\n## New section\n\nThe Acme Widget glows blue when fully charged.\n")
    (sample_dir / "acme_support_notes.txt").unlink()
    changed = rag.ingest([sample_dir])
    assert (changed.added, changed.updated, changed.unchanged, changed.removed) == (0, 1, n - 2, 1)
    assert 0 < changed.embedded < changed.chunks     # the cache served the old paragraphs
    srcs = rag.store.sources()
    assert "acme_support_notes.txt" not in srcs and "acme_widget_faq.md" in srcs
    hit = rag.retrieve("What colour does the widget glow when charged?", k=3, mode="dense")[0]
    assert hit.source == "acme_widget_faq.md" and "glows blue" in hit.text


def test_citations_carry_file_and_page(make_rag, sample_dir):
    rag = make_rag()
    rag.ingest([sample_dir])
    rows = [json.loads(l) for l in (ROOT / "data/eval/sample.jsonl").read_text().splitlines() if l.strip()]
    pdf_rows = [r for r in rows if r["sources"][0]["source"].endswith(".pdf")]
    hits_at5 = 0
    for r in pdf_rows:
        hits = rag.retrieve(r["question"], k=5, mode="hybrid")
        ref = r["sources"][0]
        hits_at5 += any(h.source == ref["source"] and h.page == ref["page"] for h in hits)
    assert pdf_rows and hits_at5 / len(pdf_rows) >= 0.6


def test_broken_files_are_reported_and_rest_ingested(make_rag, tmp_path):
    docs = tmp_path / "mixed"
    docs.mkdir()
    shutil.copy(ROOT / "data/sample/gettysburg.pdf", docs / "good.pdf")
    (docs / "empty.pdf").write_bytes(b"")
    (docs / "random.pdf").write_bytes(os.urandom(4096))
    good = (ROOT / "data/sample/gettysburg.pdf").read_bytes()
    (docs / "truncated.pdf").write_bytes(good[: len(good) // 3])
    (docs / "blank.txt").write_text("   \n")
    (docs / "loop").symlink_to(docs, target_is_directory=True)    # a symlink loop must not hang
    rag = make_rag()
    res = rag.ingest([docs])
    reasons = {Path(f["path"]).name: f["reason"] for f in res.failed}
    assert res.added >= 1 and rag.stats()["files"] == res.added
    assert reasons["empty.pdf"].startswith("empty file") and "not a PDF" in reasons["random.pdf"]
    assert "blank.txt" in reasons
    assert all(r and "\n" not in r for r in reasons.values())
    # a second run re-reports the same failures without parsing them again
    again = rag.ingest([docs])
    assert {Path(f["path"]).name for f in again.failed} == set(reasons) and again.unchanged == res.added


def test_index_refuses_other_embedder(make_rag, sample_dir, tmp_path):
    from rag.errors import IndexMismatchError

    rag = make_rag()
    rag.ingest([sample_dir / "acme_support_notes.txt"])
    rag.store.set_info({**rag.store.get_info(), "embedder": "some/other-model", "dim": 768})
    with pytest.raises(IndexMismatchError, match="re-embed"):
        rag.ingest([sample_dir])


def test_cli_json_and_exit_codes(tmp_path, sample_dir, capsys):
    assert ingest_main([str(sample_dir / "acme_support_notes.txt"), "--json", "--workers", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"added", "updated", "unchanged", "removed", "failed", "chunks", "seconds"}
    assert out["added"] == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.pdf").write_bytes(b"nope")
    assert ingest_main([str(bad), "--json"]) == 1                # nothing could be ingested
    assert ingest_main([]) == 2                                   # usage error
    assert ingest_main([str(tmp_path / "missing")]) == 2
    from rag.__main__ import main as rag_main

    capsys.readouterr()
    assert rag_main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["files"] == 1 and stats["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"


def _ingest_cmd(docs: Path, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "ingest", str(docs), "--data-dir", str(data_dir), "--json"]


def _done_count(data_dir: Path) -> int:
    db = data_dir / "index" / "manifest.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM files WHERE status='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _store_ids(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "index" / "chunks.sqlite") as con:
        return sorted(r[0] for r in con.execute("SELECT id FROM chunks"))


@pytest.mark.slow
def test_kill_9_mid_ingest_then_complete(tmp_path):
    """kill -9 at three points; each time the next run completes with exactly a clean ingest's chunks."""
    docs = tmp_path / "kdocs"
    docs.mkdir()
    base = (ROOT / "data/sample/acme_widget_faq.md").read_text()
    for i in range(8):
        (docs / f"doc{i}.md").write_text(f"# Document {i}\n\n" + base.replace("Acme", f"Acme{i}") * 2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    clean = tmp_path / "clean"
    subprocess.run(_ingest_cmd(docs, clean), check=True, env=env, capture_output=True, timeout=300)
    want = _store_ids(clean)
    for trial, after_done in enumerate((0, 2, 5)):
        data = tmp_path / f"killed{trial}"
        data.mkdir()
        shutil.copytree(clean / "cache", data / "cache")   # same vectors, faster (content-addressed)
        proc = subprocess.Popen(_ingest_cmd(docs, data), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while _done_count(data) < after_done and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if after_done == 0:
            time.sleep(1.5)   # somewhere in start-up, parsing or the first upsert
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = subprocess.run(_ingest_cmd(docs, data), env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["added"] + report["unchanged"] + report["updated"] == 8 and not report["failed"]
        ids = _store_ids(data)
        assert ids == want                      # no duplicates, no orphans, nothing missing
        with sqlite3.connect(data / "index" / "manifest.sqlite") as con:
            assert con.execute("SELECT COUNT(*) FROM files WHERE status!='done'").fetchone()[0] == 0


@pytest.mark.slow
def test_shared_pdfs_every_file_accounted_for(make_rag):
    pdfs = shared("pdfs")
    manifest = (pdfs / "MANIFEST.tsv").read_text().splitlines()
    header = manifest[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in manifest[1:] if line.strip()]
    rag = make_rag()
    res = rag.ingest([pdfs])
    by_name = {Path(f.path).resolve().relative_to(pdfs.resolve()).as_posix(): f for f in res.files}
    assert len(res.files) == len(rows) == res.added + len(res.failed)
    for row in rows:
        f = by_name[row["file"]]
        assert f.status == "added" and f.chunks > 0 or f.status == "failed" and f.reason, row["file"]
    for known in ("papers/2302.07302v1.pdf", "pdfplumber/federal-register-2020-17221.pdf",
                  "pdfplumber/ca-warn-report.pdf", "sample-files/GeoTopo-komprimiert.pdf"):
        assert by_name[known].status == "added" and by_name[known].chunks > 5, known
    failed = {row: by_name[row].reason for row in by_name if by_name[row].status == "failed"}
    assert "encrypted" in failed["pdfplumber/password-example.pdf"]
    assert failed["pdfplumber/empty.pdf"].startswith("empty file")
    assert "no text layer" in failed["sample-files/imagemagick-images.pdf"]
    # with the passwords from the shared manifest the encrypted files open
    rag.settings.ingest.passwords = ["test", "openpassword"]
    rag.settings.ingest.workers = 0
    again = rag.ingest([pdfs / "pdfplumber" / "password-example.pdf", pdfs / "sample-files" / "libreoffice-writer-password.pdf"])
    assert again.added + again.updated == 2, again.failed
