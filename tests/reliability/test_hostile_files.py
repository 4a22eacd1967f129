"""Hostile input: every file of a generated corpus ends as ingested or failed-with-reason, and the
run never crashes, hangs or runs out of memory.

The pipeline runs for real (parser worker process, splitter, embedded store); the embedder is
the HashEmbedder fake (tests/reliability/_helpers.py), since what is under test is what the
pipeline does with the files, not the vectors.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from tests.reliability import hostile
from tests.reliability._helpers import hash_rag

LIMITS = {"max_file_mb": hostile.MAX_FILE_MB, "max_pages": hostile.MAX_PAGES, "ocr": "off",
          "file_timeout_s": 60}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, hostile.Expect]]:
    folder = tmp_path_factory.mktemp("hostile")
    return folder, hostile.build(folder, seed=1234)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_every_hostile_file_is_ingested_or_failed_with_a_reason(corpus):
    folder, expect = corpus
    rag = hash_rag(ingest=LIMITS)
    rss_before = _rss_mb()
    t0 = time.monotonic()
    res = rag.ingest([folder])
    elapsed = time.monotonic() - t0
    by_name = {Path(f.path).name: f for f in res.files}

    assert set(by_name) == set(expect), "every file reported exactly once (and the folder loop walked once)"
    assert len(res.files) == res.added + len(res.failed) == len(expect) >= 35
    for name, exp in expect.items():
        f = by_name[name]
        assert f.status in ("added", "failed"), name
        if f.status == "failed":
            assert f.reason and "\n" not in f.reason and len(f.reason) < 400, (name, f.reason)
            assert not f.reason.startswith("parser error"), (name, f.reason)  # the loader said what is wrong
        else:
            assert f.chunks > 0, name
        if exp.outcome != "either":
            assert f.status == {"ingested": "added", "failed": "failed"}[exp.outcome], (name, f.reason)
        if exp.reason:
            assert exp.reason in f.reason, (name, f.reason)
        if exp.warning:
            assert any(exp.warning in w for w in f.warnings), (name, f.warnings)
    huge = by_name["huge_page_count.pdf"]
    assert f"first {hostile.MAX_PAGES} of {hostile.HUGE_PAGES + 3} pages" in huge.warnings[0]

    # the store holds exactly the ingested files, each with its reported chunks
    sources = rag.store.sources()
    assert {Path(s).name for s in sources} == {n for n, f in by_name.items() if f.status == "added"}
    assert sum(sources.values()) == res.chunks
    assert elapsed < 90, f"hostile corpus took {elapsed:.0f} s"
    assert _rss_mb() - rss_before < 800, "ingest grew the process by more than 800 MB"

    # a second run: nothing re-parsed, the same verdicts
    again = rag.ingest([folder])
    assert again.unchanged == res.added and again.chunks == 0
    assert {Path(f["path"]).name: f["reason"] for f in again.failed} == \
        {Path(f["path"]).name: f["reason"] for f in res.failed}
    rag.close()


def test_hung_parser_is_timed_out_and_the_rest_is_ingested(tmp_path, monkeypatch):
    from tests.reliability import _helpers

    monkeypatch.setattr("ingest.pipeline._parse", _helpers.slow_parse)  # runs in the worker process
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a_slow.txt").write_text("This file makes the parser hang forever.\n")
    for i in range(3):
        (docs / f"b{i}.txt").write_text(f"Ordinary file number {i} about tides and moons.\n")
    rag = hash_rag(ingest={"file_timeout_s": 3, "workers": 1})
    t0 = time.monotonic()
    res = rag.ingest([docs])
    assert time.monotonic() - t0 < 60
    assert res.added == 3 and len(res.failed) == 1
    assert res.failed[0]["path"].endswith("a_slow.txt") and "took over 3 s" in res.failed[0]["reason"]
    rag.close()


def test_crashing_parser_fails_only_its_file(tmp_path, monkeypatch):
    from tests.reliability import _helpers

    monkeypatch.setattr("ingest.pipeline._parse", _helpers.segv_parse)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.txt", "b_crash.txt", "c.txt", "d_crash.txt", "e.txt"):
        (docs / name).write_text(f"Contents of {name}: harbours, ships and cargo.\n")
    rag = hash_rag(ingest={"workers": 1})
    res = rag.ingest([docs])
    failed = {Path(f["path"]).name: f["reason"] for f in res.failed}
    assert res.added == 3 and set(failed) == {"b_crash.txt", "d_crash.txt"}
    assert all("crashed" in r for r in failed.values())
    rag.close()


def test_symlink_loop_to_a_file_fails_that_file_only(tmp_path):
    """Regression: Path.resolve() raised RuntimeError on a file symlink loop and aborted the run."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.txt").write_text("A file that is fine, about rivers.\n")
    (docs / "x.txt").symlink_to(docs / "y.txt")
    (docs / "y.txt").symlink_to(docs / "x.txt")
    rag = hash_rag(ingest={"workers": 0})
    res = rag.ingest([docs])
    assert res.added == 1 and sorted(Path(f["path"]).name for f in res.failed) == ["x.txt", "y.txt"]
    assert all("symbolic links" in f["reason"] for f in res.failed)
    rag.close()


def test_damaged_page_object_loses_only_that_page(tmp_path):
    """Regression: a page PDFium cannot load failed the whole file ('parser error: PdfiumError')."""
    from ingest.loaders.pdf import load_pdf
    from rag.settings import IngestSettings

    path = tmp_path / "two.pdf"
    path.write_bytes(hostile.damaged_page_pdf())
    doc = load_pdf(path, IngestSettings(ocr="off"))
    assert [p.number for p in doc.pages] == [1] and "first page is fine" in doc.pages[0].text
    assert any(w.startswith("page 2: cannot be loaded") for w in doc.warnings)
